package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

const exitCodesHelp = `
Exit codes: 0 success, 1 error, 2 usage error, 3 permission or authentication denied,
4 the node's own Raft log is damaged (serve refused to start; the message says what to do).

Every flag can also be set with an environment variable PROGLOG_<FLAG> (dashes
become underscores, e.g. PROGLOG_DATA_DIR) or in the --config file as
"name = value" lines. Precedence: flag > environment > config file > default.`

func newRootCmd(e *env) *cobra.Command {
	var configPath string
	root := &cobra.Command{
		Use:           "proglog",
		Short:         "A durable, replicated-ready commit log served over gRPC, gRPC-Web and Connect",
		Long:          "proglog runs a commit log node and talks to it.\n" + exitCodesHelp,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyDefaults(cmd, configPath, e.getenv)
		},
	}
	root.PersistentFlags().StringVar(&configPath, "config", "", `config file of "name = value" lines (env PROGLOG_CONFIG)`)
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(
		newServeCmd(e),
		newProduceCmd(e),
		newConsumeCmd(e),
		newStatsCmd(e),
		newWhoAmICmd(e),
		newCertsCmd(e),
		newBenchCmd(e),
		newTopicsCmd(e),
		newNodesCmd(e),
		newHealthCmd(e),
		newVersionCmd(e),
	)
	for _, c := range root.Commands() {
		wrapArgs(c)
	}
	return root
}

// wrapArgs makes positional-argument mistakes usage errors (exit 2).
func wrapArgs(c *cobra.Command) {
	if c.Args != nil {
		check := c.Args
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return usageError{err}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		wrapArgs(sub)
	}
}

// applyDefaults fills every flag not given on the command line from the
// environment, then from the config file.
func applyDefaults(cmd *cobra.Command, configPath string, getenv func(string) string) error {
	if !cmd.Flags().Changed("config") {
		if v := getenv(envName("config")); v != "" {
			configPath = v
		}
	}
	var file map[string]configValue
	if configPath != "" {
		var err error
		if file, err = readConfigFile(configPath); err != nil {
			return usageError{err}
		}
		known := allFlagNames(cmd.Root())
		for name, v := range file {
			if !known[name] {
				return usagef("%s:%d: unknown setting %q", configPath, v.line, name)
			}
		}
	}
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "config" || f.Name == "help" || f.Annotations[cmdLineOnly] != nil {
			return
		}
		if v, ok := lookupEnv(getenv, f.Name); ok {
			if serr := cmd.Flags().Set(f.Name, v); serr != nil {
				err = usagef("environment %s=%q: %v", envName(f.Name), v, serr)
			}
			return
		}
		if v, ok := file[f.Name]; ok {
			if serr := cmd.Flags().Set(f.Name, v.value); serr != nil {
				err = usagef("%s:%d: %s = %q: %v", configPath, v.line, f.Name, v.value, serr)
			}
		}
	})
	return err
}

func lookupEnv(getenv func(string) string, flag string) (string, bool) {
	v := getenv(envName(flag))
	return v, v != ""
}

func allFlagNames(c *cobra.Command) map[string]bool {
	names := map[string]bool{}
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(f *pflag.Flag) { names[f.Name] = true })
		c.PersistentFlags().VisitAll(func(f *pflag.Flag) { names[f.Name] = true })
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(c)
	return names
}

func wantNoArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%s takes no arguments, got %q", cmd.CommandPath(), args[0])
	}
	return nil
}
