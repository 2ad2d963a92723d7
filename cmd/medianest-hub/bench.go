package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/medianest/hub/internal/loadtest"
)

func newBenchCmd() *cobra.Command {
	var cpuProfile string
	var profile *os.File
	c := &cobra.Command{
		Use:   "bench",
		Short: "Load scenarios against real hub nodes; each prints one JSON line",
		// --cpuprofile profiles the load tool's own process (the hub
		// processes serve pprof at MEDIANEST_PPROF_ADDR).
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if cpuProfile == "" {
				return nil
			}
			f, err := os.Create(cpuProfile)
			if err != nil {
				return fmt.Errorf("cpu profile: %w", err)
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				f.Close()
				return fmt.Errorf("cpu profile: %w", err)
			}
			profile = f
			return nil
		},
		PersistentPostRun: func(*cobra.Command, []string) {
			if profile != nil {
				pprof.StopCPUProfile()
				profile.Close()
			}
		},
	}
	c.PersistentFlags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the load tool's process to this file")
	var o loadtest.RevokeOptions
	var verbose bool
	revoke := &cobra.Command{
		Use:   "revoke",
		Short: "Revocation latency: N strict-mode sockets on several nodes, revoke sessions, time API call to client disconnect",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := loadtest.RunRevoke(cmd.Context(), o, benchLogger(verbose))
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

	var so loadtest.SecurityOptions
	sec := &cobra.Command{
		Use:   "security",
		Short: "Security worker throughput: events from stream to audit log per second, detections on",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := loadtest.RunSecurity(cmd.Context(), so, benchLogger(verbose))
			if err != nil {
				return fmt.Errorf("bench security: %w", err)
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
		},
	}
	sf := sec.Flags()
	sf.IntVar(&so.Events, "events", 200_000, "security events to process")
	sf.StringVar(&so.DatabaseURL, "database", "", "database URL (default: SQLite in a temporary directory)")
	sf.IntVar(&so.Batch, "batch", 0, "worker batch size (default: the worker's)")
	sf.BoolVar(&verbose, "verbose", false, "log progress")
	c.AddCommand(sec)

	var mo loadtest.MediaOptions
	media := &cobra.Command{
		Use:   "media",
		Short: "Media worker: events per second from stream to emit, and publish-to-client latency",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := loadtest.RunMedia(cmd.Context(), mo, benchLogger(verbose))
			if err != nil {
				return fmt.Errorf("bench media: %w", err)
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
		},
	}
	mf := media.Flags()
	mf.IntVar(&mo.Events, "events", 50_000, "download.progress events")
	mf.IntVar(&mo.Downloads, "downloads", 1000, "distinct downloads")
	mf.BoolVar(&mo.Coalesce, "coalesce", false, "coalesce progress at 4 per download per second")
	mf.IntVar(&mo.Rate, "rate", 0, "publish this many events per second (0 = as fast as possible: throughput)")
	mf.IntVar(&mo.Users, "users", 100, "connected users the downloads belong to")
	mf.BoolVar(&verbose, "verbose", false, "log progress")
	c.AddCommand(media)

	var fo loadtest.FanoutOptions
	fanout := &cobra.Command{
		Use:   "fanout",
		Short: "Fan-out: subscribers in one room, publishes at a rate; deliveries/s, loss, latency, CPU per delivery",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := loadtest.RunFanout(cmd.Context(), fo, benchLogger(verbose))
			if err != nil {
				return fmt.Errorf("bench fanout: %w", err)
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			for _, r := range res {
				if err := enc.Encode(r); err != nil {
					return err
				}
			}
			return nil
		},
	}
	ff := fanout.Flags()
	ff.IntVar(&fo.Nodes, "nodes", 1, "hub processes (subscribers spread over them; publishes reach them through NATS)")
	ff.IntVar(&fo.Subscribers, "subscribers", 1000, "sockets in the room")
	ff.IntVar(&fo.Rate, "rate", 100, "messages per second (the ramp's first step)")
	ff.DurationVar(&fo.Duration, "duration", 10*time.Second, "how long each step publishes")
	ff.StringVar(&fo.Via, "via", "nats", "publish through nats (hub.emit) or client (media-status)")
	ff.IntVar(&fo.Size, "size", 100, "payload bytes")
	ff.BoolVar(&fo.Ramp, "ramp", false, "raise the rate by half each step until loss or p99 over --max-p99")
	ff.DurationVar(&fo.MaxP99, "max-p99", 100*time.Millisecond, "the ramp's latency bound")
	ff.BoolVar(&verbose, "verbose", false, "log progress")
	c.AddCommand(fanout)

	for _, idle := range []bool{false, true} {
		var co loadtest.ConnOptions
		name, short := "connect", "Connections per second: authenticated /media sockets on one hub process"
		if idle {
			name, short = "idle", "Idle connections: hold N authenticated sockets and report the hub's RSS per connection"
		}
		cc := &cobra.Command{
			Use: name, Short: short, Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				res, err := loadtest.RunConnect(cmd.Context(), co, idle, benchLogger(verbose))
				if err != nil {
					return fmt.Errorf("bench %s: %w", name, err)
				}
				return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
			},
		}
		cf := cc.Flags()
		cf.IntVar(&co.Connections, "connections", 0, "connections (default 5,000 for connect, 10,000 for idle)")
		cf.IntVar(&co.Concurrency, "concurrency", 100, "connects in flight")
		cf.IntVar(&co.Nodes, "nodes", 1, "hub processes (connections spread round-robin)")
		cf.IntVar(&co.Processes, "processes", 1, "load-tool processes holding the connections (one holds at most its file-descriptor limit)")
		if idle {
			cf.DurationVar(&co.Hold, "hold", 30*time.Second, "how long to hold the connections")
			cf.DurationVar(&co.Sample, "sample", 0, "interval between samples of the hubs' RSS and goroutines (default hold/10)")
		}
		cf.BoolVar(&verbose, "verbose", false, "log progress")
		c.AddCommand(cc)
	}

	var (
		urls                     []string
		from, count, concurrency int
	)
	holdCmd := &cobra.Command{
		Use:    "hold",
		Short:  "Hold connections for bench idle/connect --processes (run by the load tool itself)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return loadtest.RunHold(cmd.Context(), urls, from, count, concurrency, cmd.InOrStdin(), cmd.OutOrStdout(), benchLogger(verbose))
		},
	}
	hf := holdCmd.Flags()
	hf.StringSliceVar(&urls, "urls", nil, "hub base URLs")
	hf.IntVar(&from, "from", 0, "index of the first connection (its user and source address)")
	hf.IntVar(&count, "count", 0, "connections")
	hf.IntVar(&concurrency, "concurrency", 50, "connects in flight")
	c.AddCommand(holdCmd)
	return c
}

func benchLogger(verbose bool) zerolog.Logger {
	level := zerolog.WarnLevel
	if verbose {
		level = zerolog.InfoLevel
	}
	return zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.TimeOnly}).Level(level).With().Timestamp().Logger()
}
