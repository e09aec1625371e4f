package main

import (
	"errors"

	"github.com/discotrace/discotrace/tracer"
)

// checkTracePrivileges fails with exit code 2 and one line naming what is missing when the
// process cannot load and attach the tracer's programs.
func checkTracePrivileges() error {
	err := tracer.CheckPrivileges()
	var perr *tracer.PrivilegeError
	if errors.As(err, &perr) {
		return &exitError{code: 2, err: err}
	}
	return err
}
