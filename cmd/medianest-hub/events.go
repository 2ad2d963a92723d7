package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/medianest/hub/events"
	"github.com/medianest/hub/internal/config"
)

func newEventsCmd(lookup config.LookupFunc) *cobra.Command {
	c := &cobra.Command{Use: "events", Short: "Read the durable event streams"}
	var since string
	var asJSON, noFollow bool
	tail := &cobra.Command{
		Use:   "tail <security|alerts|session|media>",
		Short: "Print events of a stream as they arrive (needs MEDIANEST_NATS_URL)",
		Args:  cobra.ExactArgs(1),
		ValidArgs: []string{
			events.DomainSecurity, "alerts", events.DomainSession, events.DomainMedia,
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadForClient(lookup)
			if err != nil {
				return err
			}
			domain := args[0]
			switch domain {
			case events.DomainSecurity, "alerts", events.DomainSession, events.DomainMedia, "deadletter":
			default:
				return fmt.Errorf("unknown stream %q: use security, alerts, session or media", domain)
			}
			start, err := parseSince(since, time.Now())
			if err != nil {
				return err
			}
			nc, err := nats.Connect(cfg.NATSURL, nats.Name("medianest-hub events tail"))
			if err != nil {
				return fmt.Errorf("connect to MEDIANEST_NATS_URL: %w", err)
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			return tailStream(cmd.Context(), js, events.StreamName(cfg.SubjectPrefix, domain), start, !noFollow, asJSON, cmd.OutOrStdout())
		},
	}
	f := tail.Flags()
	f.StringVar(&since, "since", "", "start this long ago (10m) or at this time (RFC 3339); default: only new events")
	f.BoolVar(&asJSON, "json", false, "print each event as one JSON line")
	f.BoolVar(&noFollow, "no-follow", false, "stop after the events already stored")
	c.AddCommand(tail)
	return c
}

// loadForClient reads the configuration a client command needs: it does
// not require the JWT secret.
func loadForClient(lookup config.LookupFunc) (config.Config, error) {
	cfg, err := config.Load(func(k string) (string, bool) {
		if k == "MEDIANEST_JWT_SECRET" {
			if v, ok := lookup(k); ok && len(v) >= 32 {
				return v, true
			}
			return strings.Repeat("x", 32), true // not used by client commands
		}
		return lookup(k)
	})
	if err != nil {
		return cfg, fmt.Errorf("invalid configuration:\n%w", err)
	}
	if cfg.NATSURL == "" {
		return cfg, fmt.Errorf("MEDIANEST_NATS_URL is not set: point it at the hub's NATS (run the hub with MEDIANEST_NATS_LISTEN=127.0.0.1:4222 to expose the embedded one)")
	}
	return cfg, nil
}

func parseSince(s string, now time.Time) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		t := now.Add(-d)
		return &t, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return nil, fmt.Errorf("--since %q: want a duration like 10m or an RFC 3339 time", s)
	}
	return &t, nil
}

func tailStream(ctx context.Context, js jetstream.JetStream, stream string, since *time.Time, follow, asJSON bool, out io.Writer) error {
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy}
	if since != nil {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, since
	}
	cons, err := js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	for ctx.Err() == nil {
		batch, err := cons.Fetch(100, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			if asJSON {
				fmt.Fprintf(out, "%s\n", m.Data())
				continue
			}
			fmt.Fprintln(out, readable(m.Subject(), m.Data(), m.Headers()))
		}
		if got == 0 && !follow {
			return nil
		}
	}
	return nil
}

// readable formats an event as "time type key=value …".
func readable(subject string, raw []byte, hdr nats.Header) string {
	var ev events.Event
	if err := json.Unmarshal(raw, &ev); err != nil || ev.Type == "" {
		line := fmt.Sprintf("%s (not an event) %q", subject, truncate(string(raw), 200))
		if r := hdr.Get(events.HeaderDeadLetterReason); r != "" {
			line += " reason=" + r
		}
		return line
	}
	var data map[string]any
	_ = json.Unmarshal(ev.Data, &data)
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(ev.Time.Local().Format("15:04:05.000"))
	b.WriteString(" ")
	b.WriteString(strings.TrimSuffix(strings.TrimPrefix(ev.Type, "medianest."), ".v1"))
	for _, k := range keys {
		v, _ := json.Marshal(data[k])
		fmt.Fprintf(&b, " %s=%s", k, strings.Trim(string(v), `"`))
	}
	if r := hdr.Get(events.HeaderDeadLetterReason); r != "" {
		b.WriteString(" reason=" + r)
	}
	return b.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
