package main

import (
	"errors"
	"testing"
	"time"

	"github.com/fwbuild/fwbuild/contract/unit"
)

func TestAccountsLockout(t *testing.T) {
	h, err := unit.PasswordHash("right")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	a, err := newAccounts(unit.Record{Accounts: []unit.Account{{User: "admin", Role: unit.RoleAdministrator, Hash: h}}},
		lockoutPolicy{Threshold: 3, Duration: time.Minute, ResetAfter: time.Minute}, clock)
	if err != nil {
		t.Fatal(err)
	}
	if acc, err := a.authenticate("admin", "right"); err != nil || acc.Role != unit.RoleAdministrator {
		t.Fatalf("right password: %v %v", acc, err)
	}
	if _, err := a.authenticate("nobody", "right"); !errors.Is(err, errBadCredentials) {
		t.Fatalf("unknown user: %v", err)
	}
	for i := 0; i < 2; i++ {
		if _, err := a.authenticate("admin", "wrong"); !errors.Is(err, errBadCredentials) {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	// A success in between resets the count.
	if _, err := a.authenticate("admin", "right"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		a.authenticate("admin", "wrong")
	}
	if !a.locked("admin") {
		t.Fatal("not locked after 3 failures")
	}
	if _, err := a.authenticate("admin", "right"); !errors.Is(err, errLocked) {
		t.Fatalf("locked account, right password: %v, want errLocked", err)
	}
	now = now.Add(61 * time.Second)
	if _, err := a.authenticate("admin", "right"); err != nil {
		t.Fatalf("after the lockout: %v", err)
	}
	// Failures further apart than ResetAfter never add up to a lockout.
	for i := 0; i < 5; i++ {
		a.authenticate("admin", "wrong")
		now = now.Add(2 * time.Minute)
	}
	if a.locked("admin") {
		t.Fatal("locked by failures spread over 10 minutes")
	}
}
