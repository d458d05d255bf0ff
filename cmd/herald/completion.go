package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// runCompletion: herald completion bash
func runCompletion(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("herald completion", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: herald completion bash\n\nPrints a bash completion script. Load it now with\n  source <(herald completion bash)\nor for every shell with\n  herald completion bash > /etc/bash_completion.d/herald")
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 || fs.Arg(0) != "bash" {
		return usagef("want one shell, bash: herald completion bash")
	}
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	fmt.Fprintf(stdout, bashCompletion, strings.Join(append(names, "help"), " "))
	return nil
}

// bashCompletion completes commands, each command's flags (read from its
// -h, so it never goes stale), fixed flag values, and service names (from
// the agent) for instances and watch.
const bashCompletion = `# bash completion for herald: source <(herald completion bash)
_herald() {
  local cur prev cmd bin
  cur="${COMP_WORDS[COMP_CWORD]}"
  prev="${COMP_WORDS[COMP_CWORD-1]}"
  bin="${COMP_WORDS[0]}"
  COMPREPLY=()
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "%s" -- "$cur"))
    return
  fi
  cmd="${COMP_WORDS[1]}"
  case "$prev" in
    -status) COMPREPLY=($(compgen -W "passing warning critical draining" -- "$cur")); return ;;
    -log-level) COMPREPLY=($(compgen -W "debug info warn error" -- "$cur")); return ;;
    -log-format) COMPREPLY=($(compgen -W "text json" -- "$cur")); return ;;
    -check) COMPREPLY=($(compgen -W "ttl= session" -- "$cur")); compopt -o nospace 2>/dev/null; return ;;
    -data-dir|-acl-file|-token-file|-config-file|-config-dir) COMPREPLY=($(compgen -f -- "$cur")); return ;;
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$("$bin" "$cmd" -h 2>&1 | sed -n 's/^  \(-[A-Za-z0-9-]*\).*/\1/p')" -- "$cur"))
    return
  fi
  case "$cmd" in
    instances|watch)
      COMPREPLY=($(compgen -W "$("$bin" services 2>/dev/null | awk 'NR>1 {print $1}')" -- "$cur")) ;;
    completion)
      COMPREPLY=($(compgen -W "bash" -- "$cur")) ;;
    validate)
      COMPREPLY=($(compgen -f -- "$cur")) ;;
  esac
}
complete -F _herald herald
`
