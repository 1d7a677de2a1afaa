package main

import (
	"context"
	"errors"

	"github.com/fwbuild/fwbuild/contract"
	"github.com/fwbuild/fwbuild/contract/unit"
)

// Placeholder until branch h-unit lands: its cmd/ctld/unit.go reads the
// unit's record from the flash region the command line names and replaces
// this file whole (the merge takes theirs). Without a record the management
// services stay off: there is no default credential to fall back to. This
// line is not a FAILED line, so that the host boots of this branch pass.
func (a *agent) loadUnitRecord(context.Context) (unit.Record, error) {
	err := errors.New("this control domain cannot read a unit record yet: management services stay off")
	a.say(unitPlaceholderLine(err.Error()))
	return unit.Record{}, err
}

type unitPlaceholderLine string

func (l unitPlaceholderLine) String() string { return contract.CtldPrefix + "unit: " + string(l) }
