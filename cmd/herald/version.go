package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/herald-sd/herald/cmd/herald/internal/version"
)

// runVersion: herald version [-json]
func runVersion(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("herald version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, `print {"version","revision","modified","go"}`)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *asJSON {
		b, err := json.Marshal(version.Get())
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s\n", b)
		return nil
	}
	fmt.Fprintln(stdout, "herald", version.String())
	return nil
}
