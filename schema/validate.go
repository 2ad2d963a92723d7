package schema

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"strings"

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
