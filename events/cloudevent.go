package events

import (
	"encoding/json"
	"fmt"
	"time"
)

// SpecVersion is the CloudEvents version of every envelope.
const SpecVersion = "1.0"

// Event is a CloudEvents 1.0 JSON envelope, the shape of every durable event
// and alert.
type Event struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Time            time.Time       `json:"time"`
	Subject         string          `json:"subject,omitempty"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
}

// TypeName is the CloudEvents type of a domain event: medianest.<domain>.<name>.v1.
func TypeName(domain, name string) string {
	return "medianest." + domain + "." + name + ".v1"
}

// New builds an envelope for data, which is marshalled to JSON.
func New(source, domain, name, subject string, data any) (Event, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return Event{}, fmt.Errorf("marshal %s.%s data: %w", domain, name, err)
	}
	return Event{
		SpecVersion:     SpecVersion,
		ID:              NewID(),
		Source:          source,
		Type:            TypeName(domain, name),
		Time:            time.Now().UTC(),
		Subject:         subject,
		DataContentType: "application/json",
		Data:            raw,
	}, nil
}
