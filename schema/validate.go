package schema

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

//go:embed events/*.json
var eventSchemas embed.FS

const envelopeFile = "cloudevent.json"

// Validator checks events against the catalogue's JSON Schemas: the
// CloudEvents envelope first, then the data schema of the event's type.
// It is safe for concurrent use.
type Validator struct {
	envelope *jsonschema.Schema
	data     map[string]*jsonschema.Schema // by CloudEvents type
}

// NewValidator compiles every embedded schema.
func NewValidator() (*Validator, error) {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	entries, err := fs.ReadDir(eventSchemas, "events")
	if err != nil {
		return nil, fmt.Errorf("schema: read embedded schemas: %w", err)
	}
	urls := map[string]string{}
	for _, e := range entries {
		b, err := eventSchemas.ReadFile(path.Join("events", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("schema: read %s: %w", e.Name(), err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("schema: parse %s: %w", e.Name(), err)
		}
		url := "https://medianest.dev/schema/" + e.Name()
		if err := c.AddResource(url, doc); err != nil {
			return nil, fmt.Errorf("schema: add %s: %w", e.Name(), err)
		}
		urls[e.Name()] = url
	}
	v := &Validator{data: map[string]*jsonschema.Schema{}}
	for name, url := range urls {
		sch, err := c.Compile(url)
		if err != nil {
			return nil, fmt.Errorf("schema: compile %s: %w", name, err)
		}
		if name == envelopeFile {
			v.envelope = sch
			continue
		}
		v.data[strings.TrimSuffix(name, ".json")] = sch
	}
	if v.envelope == nil {
		return nil, fmt.Errorf("schema: %s is missing", envelopeFile)
	}
	return v, nil
}

// Types lists the event types the validator knows.
func (v *Validator) Types() []string {
	out := make([]string, 0, len(v.data))
	for t := range v.data {
		out = append(out, t)
	}
	return out
}

// ValidationError says why an event was refused.
type ValidationError struct {
	Type   string
	Reason string
}

func (e *ValidationError) Error() string {
	if e.Type == "" {
		return "invalid event: " + e.Reason
	}
	return "invalid " + e.Type + " event: " + e.Reason
}

// Validate checks a CloudEvents JSON envelope and its data, and returns the
// event's type.
func (v *Validator) Validate(raw []byte) (string, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return "", &ValidationError{Reason: "not JSON: " + err.Error()}
	}
	if err := v.envelope.Validate(doc); err != nil {
		return "", &ValidationError{Reason: "envelope: " + flatten(err)}
	}
	var head struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	_ = json.Unmarshal(raw, &head) // the envelope schema passed
	sch := v.data[head.Type]
	if sch == nil {
		return head.Type, &ValidationError{Type: head.Type, Reason: "unknown event type"}
	}
	data, err := jsonschema.UnmarshalJSON(bytes.NewReader(head.Data))
	if err != nil {
		return head.Type, &ValidationError{Type: head.Type, Reason: "data: " + err.Error()}
	}
	if err := sch.Validate(data); err != nil {
		return head.Type, &ValidationError{Type: head.Type, Reason: "data: " + flatten(err)}
	}
	return head.Type, nil
}

var printer = message.NewPrinter(language.English)

// Envelope is an event's CloudEvents attributes, decoded once by the
// caller; see [Validator.ValidateEnvelope].
type Envelope struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Time            string          `json:"time"`
	Subject         *string         `json:"subject"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
}

// ValidateEnvelope is [Validator.Validate] for an envelope the caller has
// already decoded: the envelope rules are checked in code (the same rules
// as cloudevent.json) and only the data goes through its JSON Schema. It
// is the fast path of high-rate consumers.
func (v *Validator) ValidateEnvelope(env *Envelope) error {
	_, err := v.ValidateEnvelopeData(env)
	return err
}

// ValidateEnvelopeData is [Validator.ValidateEnvelope] that also returns
// the data as decoded for validation (maps, slices, strings, json.Number),
// so a caller need not decode it again.
func (v *Validator) ValidateEnvelopeData(env *Envelope) (any, error) {
	fail := func(reason string) (any, error) { return nil, &ValidationError{Reason: "envelope: " + reason} }
	switch {
	case env.SpecVersion != "1.0":
		return fail("specversion must be 1.0")
	case env.ID == "" || len(env.ID) > 128:
		return fail("id must be 1 to 128 characters")
	case env.Source == "" || len(env.Source) > 256:
		return fail("source must be 1 to 256 characters")
	case env.DataContentType != "application/json":
		return fail("datacontenttype must be application/json")
	case env.Subject != nil && len(*env.Subject) > 256:
		return fail("subject is longer than 256 characters")
	case !typePattern.MatchString(env.Type):
		return fail("type must look like medianest.<domain>.<name>.v<n>")
	}
	if _, err := time.Parse(time.RFC3339Nano, env.Time); err != nil {
		return fail("time must be an RFC 3339 date-time")
	}
	if len(env.Data) == 0 || env.Data[0] != '{' {
		return fail("data must be an object")
	}
	sch := v.data[env.Type]
	if sch == nil {
		return nil, &ValidationError{Type: env.Type, Reason: "unknown event type"}
	}
	data, err := jsonschema.UnmarshalJSON(bytes.NewReader(env.Data))
	if err != nil {
		return nil, &ValidationError{Type: env.Type, Reason: "data: " + err.Error()}
	}
	if err := sch.Validate(data); err != nil {
		return nil, &ValidationError{Type: env.Type, Reason: "data: " + flatten(err)}
	}
	return data, nil
}

var typePattern = regexp.MustCompile(`^medianest\.[a-z_]+\.[a-z_.]+\.v[0-9]+$`)

// flatten turns the validator's nested error into one line.
func flatten(err error) string {
	if ve, ok := err.(*jsonschema.ValidationError); ok {
		var parts []string
		var walk func(e *jsonschema.ValidationError)
		walk = func(e *jsonschema.ValidationError) {
			if len(e.Causes) == 0 {
				loc := "/" + strings.Join(e.InstanceLocation, "/")
				parts = append(parts, loc+": "+e.ErrorKind.LocalizedString(printer))
				return
			}
			for _, c := range e.Causes {
				walk(c)
			}
		}
		walk(ve)
		if len(parts) > 4 {
			parts = append(parts[:4], "…")
		}
		return strings.Join(parts, "; ")
	}
	return err.Error()
}
