// Package contract is every format that the build writes and the running
// control domain reads, or that the control domain prints and a test or an
// operator's tool reads: the guests bundle, the kernel command-line
// parameters, paths inside the control domain, the tags in guest configs and
// the console lines. Both sides import it, so a format cannot drift apart.
//
// It imports only the standard library: ctld and guestinit are built from
// it inside the control domain's own Go module, which carries nothing else
// of fwbuild's dependencies.
package contract
