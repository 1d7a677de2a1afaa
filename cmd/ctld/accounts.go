package main

import (
	"errors"
	"sync"
	"time"

	"github.com/fwbuild/fwbuild/contract/unit"
)

// lockoutPolicy is Redfish AccountService's lockout: after Threshold failed
// logins in a row (no success in between, none older than ResetAfter) the
// account refuses even its right password for Duration.
type lockoutPolicy struct {
	Threshold  int
	Duration   time.Duration
	ResetAfter time.Duration
}

// defaultLockout: 5 failures lock an account for 5 minutes; a failure older
// than 5 minutes no longer counts.
func defaultLockout() lockoutPolicy {
	return lockoutPolicy{Threshold: 5, Duration: 5 * time.Minute, ResetAfter: 5 * time.Minute}
}

var (
	errBadCredentials = errors.New("wrong user name or password")
	errLocked         = errors.New("account locked after repeated failed logins")
)

// accounts authenticates management requests (Redfish, the console) against
// the unit's record, with one lockout state per user name shared by every
// service, so a guesser gains nothing by switching protocols.
type accounts struct {
	policy lockoutPolicy
	now    func() time.Time

	mu    sync.Mutex
	users map[string]unit.Account
	fails map[string]*failures
	// decoy is hashed for unknown users, so a login takes as long whether
	// or not the user exists.
	decoy unit.Account
}

type failures struct {
	count       int
	last        time.Time
	lockedUntil time.Time
}

func newAccounts(r unit.Record, p lockoutPolicy, now func() time.Time) (*accounts, error) {
	decoy, err := unit.PasswordHash("decoy")
	if err != nil {
		return nil, err
	}
	a := &accounts{policy: p, now: now, users: map[string]unit.Account{}, fails: map[string]*failures{},
		decoy: unit.Account{Hash: decoy}}
	for _, acc := range r.Accounts {
		a.users[acc.User] = acc
	}
	return a, nil
}

// authenticate returns the account for a right user name and password, or
// errLocked while the user is locked out (checked before the password, so
// a locked account leaks nothing), or errBadCredentials.
func (a *accounts) authenticate(user, password string) (unit.Account, error) {
	now := a.now()
	a.mu.Lock()
	f := a.fails[user]
	if f != nil && now.Before(f.lockedUntil) {
		a.mu.Unlock()
		return unit.Account{}, errLocked
	}
	acc, known := a.users[user]
	a.mu.Unlock()

	// The hash runs outside the lock: it is the slow part.
	ok := false
	if known {
		ok = acc.Verify(password)
	} else {
		a.decoy.Verify(password)
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	if ok {
		delete(a.fails, user)
		return acc, nil
	}
	f = a.fails[user]
	if f == nil || now.Sub(f.last) > a.policy.ResetAfter {
		f = &failures{}
		a.fails[user] = f
	}
	f.count++
	f.last = now
	if a.policy.Threshold > 0 && f.count >= a.policy.Threshold {
		f.lockedUntil = now.Add(a.policy.Duration)
		f.count = 0
	}
	return unit.Account{}, errBadCredentials
}

// locked reports whether a user is locked out now (AccountService's Locked).
func (a *accounts) locked(user string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	f := a.fails[user]
	return f != nil && a.now().Before(f.lockedUntil)
}
