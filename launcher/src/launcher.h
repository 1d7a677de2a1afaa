/*
 * fwbuild launcher: a UEFI boot service driver that the build inserts into
 * the firmware's DXE volume. It offers the flash payload to the platform's
 * boot manager as a boot option (a LoadFile handle plus Boot####/BootNext),
 * so the payload starts where the platform starts any OS loader: after
 * ReadyToBoot, at TPL_APPLICATION, measured like any boot option. The
 * payload's bytes are accepted only if their SHA-256 is the one pinned
 * below at build time.
 */
#ifndef FWB_LAUNCHER_H
#define FWB_LAUNCHER_H

#include <efi.h>
#include "slots.h"

/* Where the payload is. */
#define FWB_SOURCE_REGION 1 /* memory-mapped flash: address, size */
#define FWB_SOURCE_FILE   2 /* PE32 section of an FFS file in any firmware volume */

/*
 * struct fwb_pin is what the build pins into the launcher. The build
 * generates pin.c with designated initialisers, so a field renamed on
 * one side fails the compile instead of shifting bytes.
 */
struct fwb_pin {
	UINT32 source;
	UINT64 address;     /* FWB_SOURCE_REGION: CPU address of the payload */
	UINT64 address_b;   /* FWB_SOURCE_REGION: slot b's CPU address; 0: one slot */
	UINT64 size;        /* payload length in bytes (of each slot) */
	EFI_GUID file;      /* FWB_SOURCE_FILE: the payload's FFS file name */
	UINT8 sha256[32];   /* SHA-256 of the payload's bytes */
	CHAR16 *description;/* the boot option's name */
};

extern const struct fwb_pin fwb_pin;

struct sha256 {
	UINT32 h[8];
	UINT64 len;
	UINT8 buf[64];
	UINTN n;
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const UINT8 *p, UINTN n);
void sha256_final(struct sha256 *s, UINT8 out[32]);

#endif
