package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/discotrace/discotrace/tracer"
)

func newVersionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, Go version and BPF object hash of this binary",
		Long: `Version prints what this binary was built from: the module version, the VCS commit
(with "+dirty" when the work tree had uncommitted changes), the Go version and platform,
and the SHA-256 of the BPF object it loads into the kernel (compare it with
` + "`sha256sum tracer/discotrace_bpfel.o`" + ` in a checkout).

The commit is known when the binary was built in a git checkout with VCS stamping on (go
build's default; -buildvcs=false, or GOFLAGS holding it, leaves it out).`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			return printVersion(cmd.OutOrStdout(), readVersion(), asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}

func init() { rootCmd.AddCommand(newVersionCmd()) }

// versionInfo is what `discotrace version` reports.
type versionInfo struct {
	// Version is the main module's version: a tag, a pseudo-version from the commit, or
	// "(devel)".
	Version string `json:"version"`
	// Commit, CommitTime (RFC 3339) and Dirty (uncommitted changes in the work tree) are
	// left out when the build recorded no VCS state.
	Commit     string `json:"commit,omitempty"`
	CommitTime string `json:"commit_time,omitempty"`
	Dirty      *bool  `json:"dirty,omitempty"`
	Go         string `json:"go"`
	Platform   string `json:"platform"` // GOOS/GOARCH
	// BPFObjectSHA256 is the hash of the embedded BPF object (tracer.ObjectHash).
	BPFObjectSHA256 string `json:"bpf_object_sha256"`
}

// readVersion collects the build's facts from the binary itself.
func readVersion() versionInfo {
	v := versionInfo{
		Version:         "unknown",
		Go:              runtime.Version(),
		Platform:        runtime.GOOS + "/" + runtime.GOARCH,
		BPFObjectSHA256: tracer.ObjectHash(),
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			v.CommitTime = s.Value
		case "vcs.modified":
			v.Dirty = new(s.Value == "true")
		}
	}
	return v
}

func printVersion(w io.Writer, v versionInfo, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	commit := "unknown: built without VCS information (outside a git checkout, or with -buildvcs=false)"
	if v.Commit != "" {
		commit = v.Commit
		if v.Dirty != nil && *v.Dirty {
			commit += "+dirty"
		}
		if v.CommitTime != "" {
			commit += " (" + v.CommitTime + ")"
		}
	}
	_, err := fmt.Fprintf(w, "discotrace %s\ncommit     %s\ngo         %s %s\nbpf object sha256:%s\n",
		v.Version, commit, v.Go, v.Platform, v.BPFObjectSHA256)
	return err
}
