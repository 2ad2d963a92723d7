package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/medianest/hub/internal/loadtest"
)

func newBenchCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "bench",
		Short: "Load scenarios against real hub nodes; each prints one JSON line",
	}
	var o loadtest.RevokeOptions
	var verbose bool
	revoke := &cobra.Command{
		Use:   "revoke",
		Short: "Revocation latency: N strict-mode sockets on several nodes, revoke sessions, time API call to client disconnect",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := zerolog.WarnLevel
			if verbose {
				level = zerolog.InfoLevel
			}
			log := zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.TimeOnly}).Level(level).With().Timestamp().Logger()
			res, err := loadtest.RunRevoke(cmd.Context(), o, log)
			if err != nil {
				return fmt.Errorf("bench revoke: %w", err)
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
		},
	}
	f := revoke.Flags()
	f.IntVar(&o.Nodes, "nodes", 3, "hub nodes")
	f.IntVar(&o.Sockets, "sockets", 10_000, "connected sockets")
	f.IntVar(&o.Revocations, "revocations", 200, "sessions to revoke")
	f.DurationVar(&o.Interval, "interval", 20*time.Millisecond, "pause between revocations")
	f.StringVar(&o.DatabaseURL, "database", "", "database URL (default: SQLite in a temporary directory)")
	f.IntVar(&o.Concurrency, "concurrency", 100, "connects in flight")
	f.BoolVar(&verbose, "verbose", false, "log progress")
	c.AddCommand(revoke)
	return c
}
