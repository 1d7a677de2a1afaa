/*
 * The launcher's choice between two payload slots, apart from UEFI so the
 * same code is compiled on the host for launcher's Go tests
 * (FWB_HOST_TEST). The variable's format is contract.SPISlots.
 */
#ifndef FWB_SLOTS_H
#define FWB_SLOTS_H

#ifdef FWB_HOST_TEST
#include <stdint.h>
typedef uint8_t UINT8;
typedef unsigned long UINTN;
#else
#include <efi.h>
#endif

#define FWB_SLOTS_SIZE 8
#define FWB_SLOTS_VERSION 1

/* Why a slot was started: contract.SPIReason. */
#define FWB_WHY_CONFIRMED 1
#define FWB_WHY_PENDING 2
#define FWB_WHY_REFUSED 3
#define FWB_WHY_UNCONFIRMED 4

struct fwb_slots {
	UINT8 confirmed; /* 'a' or 'b' */
	UINT8 trying;    /* 'a', 'b' or 0 */
	UINT8 pending;   /* 'a', 'b' or 0 */
	UINT8 failed;    /* bit 0: a, bit 1: b */
};

struct fwb_plan {
	UINT8 order[2]; /* the slots to try, in order */
	int n;
	UINT8 stale;    /* a slot found trying (never confirmed): now failed; 0 if none */
	UINT8 skipped;  /* a slot passed over because it failed on an earlier boot; 0 if none */
};

/* fwb_slots_parse reads the variable; anything but a valid record (absent,
 * short, another version) is the factory state: slot a confirmed. It
 * returns 1 for a valid record. */
int fwb_slots_parse(const UINT8 *data, UINTN n, struct fwb_slots *s);
void fwb_slots_encode(const struct fwb_slots *s, UINT8 out[FWB_SLOTS_SIZE]);
/* fwb_slots_plan marks a stale trying slot failed and orders the slots to
 * try: a pending slot once, the confirmed slot, the other slot; a failed
 * slot never. */
void fwb_slots_plan(struct fwb_slots *s, struct fwb_plan *p);
/* fwb_slots_refused records that slot's bytes were refused: a pending slot
 * is failed (not tried again until written anew); the confirmed slot's
 * bytes are checked again on every boot, so nothing is recorded. */
void fwb_slots_refused(struct fwb_slots *s, UINT8 slot);
/* fwb_slots_started records that slot is being started: a slot other than
 * the confirmed one is trying until ctld confirms it. */
void fwb_slots_started(struct fwb_slots *s, UINT8 slot);
/* fwb_slots_why is the reason code for starting order[i] of p, s being the
 * state fwb_slots_plan left. */
int fwb_slots_why(const struct fwb_slots *s, const struct fwb_plan *p, int i);

#endif
