package main

// The standard library's syscall package predates finit_module(2).
const sysFinitModule = 313
