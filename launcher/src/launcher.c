#include "launcher.h"

static EFI_SYSTEM_TABLE *st;
static EFI_BOOT_SERVICES *bs;
static EFI_RUNTIME_SERVICES *rt;

static EFI_GUID devpath_guid = EFI_DEVICE_PATH_PROTOCOL_GUID;
static EFI_GUID loadfile_guid = EFI_LOAD_FILE_PROTOCOL_GUID;
static EFI_GUID global_guid = EFI_GLOBAL_VARIABLE;
static EFI_GUID ready_to_boot_guid = { 0x7ce88fb3, 0x4bd7, 0x4679, { 0x87, 0xa8, 0xa8, 0xd8, 0xde, 0xe5, 0x0d, 0x2b } };
static EFI_GUID fv2_guid = { 0x220e73b6, 0x6bdb, 0x4413, { 0x84, 0x05, 0xb9, 0x74, 0xb1, 0x08, 0x61, 0x9a } };
/* contract.SPISlotsGUID: the vendor GUID of the slot variables. */
static EFI_GUID slots_guid = { 0x6f2a1c1e, 0x3b8d, 0x4e55, { 0x9a, 0x41, 0x53, 0x6c, 0x6f, 0x74, 0x73, 0x20 } };
/* The vendor node that names the launcher's boot device. */
static EFI_GUID vendor_guid = { 0x6f2a1c1e, 0x3b8d, 0x4e55, { 0x9a, 0x41, 0x66, 0x77, 0x62, 0x75, 0x69, 0x6c } };

/* EFI_FIRMWARE_VOLUME2_PROTOCOL, as far as ReadSection (PI spec vol. 3). */
typedef EFI_STATUS (EFIAPI *fv2_read_section)(void *This, const EFI_GUID *name, UINT8 type, UINTN instance,
					       VOID **buffer, UINTN *size, UINT32 *auth);
struct fv2 {
	void *get_attributes, *set_attributes, *read_file;
	fv2_read_section read_section;
};
#define SECTION_PE32 0x10
#define LOAD_OPTION_ACTIVE 0x00000001

struct boot_devpath {
	VENDOR_DEVICE_PATH vendor;
	EFI_DEVICE_PATH end;
} __attribute__((packed));

static struct boot_devpath devpath = {
	.vendor = { .Header = { HARDWARE_DEVICE_PATH, HW_VENDOR_DP, { sizeof(VENDOR_DEVICE_PATH), 0 } } },
	.end = { END_DEVICE_PATH_TYPE, END_ENTIRE_DEVICE_PATH_SUBTYPE, { sizeof(EFI_DEVICE_PATH), 0 } },
};

static EFI_STATUS setup_status = EFI_SUCCESS;
static const CHAR16 *setup_step = L"";
static BOOLEAN offered, refused;

/* Console output: a line is built in a buffer and written at once, so it is not interleaved with the boot manager's. */
static CHAR16 line[512];
static UINTN line_n;

static void put(const CHAR16 *s)
{
	while (*s && line_n < 509)
		line[line_n++] = *s++;
}

static void put_hex(UINT64 v, int digits)
{
	static const CHAR16 hex[] = L"0123456789abcdef";
	int i;

	for (i = digits - 1; i >= 0 && line_n < 509; i--)
		line[line_n++] = hex[(v >> (4 * i)) & 0xf];
}

static void put_dec(UINT64 v)
{
	CHAR16 d[21];
	int n = 20;

	d[20] = 0;
	do {
		d[--n] = L'0' + (CHAR16)(v % 10);
		v /= 10;
	} while (v);
	put(d + n);
}

static void put_hash(const UINT8 h[32])
{
	int i;

	for (i = 0; i < 32; i++)
		put_hex(h[i], 2);
}

static void flush(void)
{
	line[line_n++] = L'\r';
	line[line_n++] = L'\n';
	line[line_n] = 0;
	if (st->ConOut)
		st->ConOut->OutputString(st->ConOut, line);
	line_n = 0;
}

static void put_where(void)
{
	if (fwb_pin.source == FWB_SOURCE_REGION) {
		put(L"payload at 0x");
		put_hex(fwb_pin.address, 8);
	} else {
		put(L"payload file ");
		put_hex(fwb_pin.file.Data1, 8);
		put(L"-...");
	}
	put(L" (");
	put_dec(fwb_pin.size);
	put(L" bytes)");
}

static void fail(const CHAR16 *why)
{
	put(L"fwbuild-launcher: FAILED ");
	put_where();
	put(L": ");
	put(why);
	put(L"; continuing with the platform's boot order");
	flush();
}

static void copy(void *dst, const void *src, UINTN n)
{
	bs->CopyMem(dst, (void *)src, n);
}

static BOOLEAN same(const void *a, const void *b, UINTN n)
{
	const UINT8 *x = a, *y = b;

	while (n--)
		if (*x++ != *y++)
			return FALSE;
	return TRUE;
}

/* read_payload copies the payload into buf (size bytes). */
static EFI_STATUS read_payload(VOID *buf)
{
	if (fwb_pin.source == FWB_SOURCE_REGION) {
		const UINT8 *p = (const UINT8 *)(UINTN)fwb_pin.address;
		UINTN i, blank = 1;

		for (i = 0; i < 4096 && i < fwb_pin.size; i++)
			if (p[i] != 0xff) {
				blank = 0;
				break;
			}
		if (blank) {
			fail(L"no payload: the region is blank (erased flash)");
			return EFI_NOT_FOUND;
		}
		copy(buf, p, fwb_pin.size);
		return EFI_SUCCESS;
	}

	EFI_HANDLE *handles = NULL;
	UINTN n = 0, i;
	EFI_STATUS status = bs->LocateHandleBuffer(ByProtocol, &fv2_guid, NULL, &n, &handles);
	if (EFI_ERROR(status)) {
		fail(L"no firmware volume protocol");
		return EFI_NOT_FOUND;
	}
	for (i = 0; i < n; i++) {
		struct fv2 *fv;
		VOID *data = NULL;
		UINTN size = 0;
		UINT32 auth;

		if (EFI_ERROR(bs->HandleProtocol(handles[i], &fv2_guid, (VOID **)&fv)))
			continue;
		if (EFI_ERROR(fv->read_section(fv, &fwb_pin.file, SECTION_PE32, 0, &data, &size, &auth)))
			continue;
		bs->FreePool(handles);
		if (size != fwb_pin.size) {
			bs->FreePool(data);
			put(L"size is ");
			put_dec(size);
			fail(L"the payload file's size is not the pinned one");
			return EFI_NOT_FOUND;
		}
		copy(buf, data, size);
		bs->FreePool(data);
		return EFI_SUCCESS;
	}
	bs->FreePool(handles);
	fail(L"no payload: no firmware volume holds the payload file");
	return EFI_NOT_FOUND;
}

static EFI_STATUS load_slots(VOID *buf);

/*
 * load_file is the boot manager's way in. The hash is checked over the
 * bytes in the caller's buffer, the ones that will run, after the copy:
 * flash that changes between a check and a copy cannot slip through.
 */
static EFI_STATUS EFIAPI load_file(EFI_LOAD_FILE_PROTOCOL *this, EFI_DEVICE_PATH *path, BOOLEAN boot_policy,
				   UINTN *size, VOID *buf)
{
	struct sha256 s;
	UINT8 got[32];
	EFI_STATUS status;

	(void)this;
	(void)path;
	(void)boot_policy;
	offered = TRUE;
	/* The boot manager may try the handle more than once (BootNext, then an
	 * option it created itself): refuse again without a second line. */
	if (refused)
		return EFI_SECURITY_VIOLATION;
	if (size == NULL)
		return EFI_INVALID_PARAMETER;
	if (buf == NULL || *size < fwb_pin.size) {
		*size = fwb_pin.size;
		return EFI_BUFFER_TOO_SMALL;
	}
	if (fwb_pin.source == FWB_SOURCE_REGION && fwb_pin.address_b) {
		status = load_slots(buf);
		if (EFI_ERROR(status))
			refused = TRUE;
		else
			*size = fwb_pin.size;
		return status;
	}
	status = read_payload(buf);
	if (EFI_ERROR(status)) {
		refused = TRUE;
		return status;
	}
	sha256_init(&s);
	sha256_update(&s, buf, fwb_pin.size);
	sha256_final(&s, got);
	if (!same(got, fwb_pin.sha256, 32)) {
		put(L"fwbuild-launcher: FAILED ");
		put_where();
		put(L": SHA-256 mismatch: pinned ");
		put_hash(fwb_pin.sha256);
		put(L", found ");
		put_hash(got);
		put(L"; continuing with the platform's boot order");
		flush();
		refused = TRUE;
		return EFI_SECURITY_VIOLATION;
	}
	*size = fwb_pin.size;
	put(L"fwbuild-launcher: starting ");
	put_where();
	put(L" sha256 ");
	put_hash(got);
	flush();
	return EFI_SUCCESS;
}

/* check_slot copies slot's bytes into buf and checks them; on refusal it
 * puts what it found into the line and returns FALSE. */
static BOOLEAN check_slot(UINT8 slot, VOID *buf)
{
	const UINT8 *p = (const UINT8 *)(UINTN)(slot == 'a' ? fwb_pin.address : fwb_pin.address_b);
	struct sha256 s;
	UINT8 got[32];
	UINTN i;

	for (i = 0; i < 4096 && i < fwb_pin.size; i++)
		if (p[i] != 0xff)
			break;
	if (i == 4096 || i == fwb_pin.size) {
		put(L"the region is blank (erased flash)");
		return FALSE;
	}
	copy(buf, p, fwb_pin.size);
	sha256_init(&s);
	sha256_update(&s, buf, fwb_pin.size);
	sha256_final(&s, got);
	if (!same(got, fwb_pin.sha256, 32)) {
		put(L"SHA-256 mismatch: pinned ");
		put_hash(fwb_pin.sha256);
		put(L", found ");
		put_hash(got);
		return FALSE;
	}
	return TRUE;
}

static void put_slot(UINT8 slot)
{
	CHAR16 c[2] = { slot, 0 };

	put(c);
}

static void put_slot_where(UINT8 slot)
{
	put(L"payload at 0x");
	put_hex(slot == 'a' ? fwb_pin.address : fwb_pin.address_b, 8);
	put(L" (");
	put_dec(fwb_pin.size);
	put(L" bytes)");
}

/* slot_chosen is the slot this boot started (0: none yet), so that a
 * second call from the boot manager gets the same slot and no new trial. */
static UINT8 slot_chosen;

/*
 * load_slots is load_file on a board with two payload slots: it reads the
 * slot state (contract.SPISlots), tries the slots in the order
 * fwb_slots_plan gives, records the started slot as trying before it
 * returns (so a reset before ctld confirms it falls back), and prints one
 * line naming the slot and why.
 */
static EFI_STATUS load_slots(VOID *buf)
{
	UINT8 data[FWB_SLOTS_SIZE], booted[2];
	UINTN n = sizeof(data);
	UINT32 attr;
	struct fwb_slots st_, before;
	struct fwb_plan plan;
	CHAR16 why[300];
	UINTN why_n = 0;
	EFI_STATUS status;
	int i, code;

	if (slot_chosen) {
		if (!check_slot(slot_chosen, buf)) {
			line_n = 0;
			return EFI_SECURITY_VIOLATION;
		}
		return EFI_SUCCESS;
	}
	status = rt->GetVariable(L"FwbuildSpiSlots", &slots_guid, &attr, &n, data);
	fwb_slots_parse(EFI_ERROR(status) ? NULL : data, n, &st_);
	before = st_;
	fwb_slots_plan(&st_, &plan);
	/* The reasons a slot was passed over, collected in the line buffer
	 * and moved aside: each refusal is written there by check_slot. */
	for (i = 0; i < plan.n; i++) {
		UINT8 slot = plan.order[i];

		line_n = 0;
		put(L"slot ");
		put_slot(slot);
		put(L" refused: ");
		if (check_slot(slot, buf))
			break;
		fwb_slots_refused(&st_, slot);
		if (why_n == 0) {
			UINTN k;

			for (k = 0; k < line_n && k < 299; k++)
				why[k] = line[k];
			why_n = k;
		}
	}
	line_n = 0;
	if (i == plan.n) {
		/* Nothing to start: the state still records a stale trial. */
		if (st_.failed != before.failed || st_.trying != before.trying || st_.pending != before.pending) {
			fwb_slots_encode(&st_, data);
			rt->SetVariable(L"FwbuildSpiSlots", &slots_guid,
					EFI_VARIABLE_NON_VOLATILE | EFI_VARIABLE_BOOTSERVICE_ACCESS | EFI_VARIABLE_RUNTIME_ACCESS,
					sizeof(data), data);
		}
		put(L"fwbuild-launcher: FAILED ");
		put_slot_where('a');
		put(L": no payload slot to start");
		if (why_n) {
			put(L": ");
			why[why_n] = 0;
			put(why);
		}
		if (plan.stale) {
			put(L"; slot ");
			put_slot(plan.stale);
			put(L" tried and never confirmed");
		}
		if (plan.skipped) {
			put(L"; slot ");
			put_slot(plan.skipped);
			put(L" failed before");
		}
		put(L"; continuing with the platform's boot order");
		flush();
		return EFI_SECURITY_VIOLATION;
	}
	code = fwb_slots_why(&st_, &plan, i);
	fwb_slots_started(&st_, plan.order[i]);
	fwb_slots_encode(&st_, data);
	status = rt->SetVariable(L"FwbuildSpiSlots", &slots_guid,
				 EFI_VARIABLE_NON_VOLATILE | EFI_VARIABLE_BOOTSERVICE_ACCESS | EFI_VARIABLE_RUNTIME_ACCESS,
				 sizeof(data), data);
	booted[0] = plan.order[i];
	booted[1] = (UINT8)code;
	rt->SetVariable(L"FwbuildSpiBooted", &slots_guid, EFI_VARIABLE_BOOTSERVICE_ACCESS | EFI_VARIABLE_RUNTIME_ACCESS,
			sizeof(booted), booted);
	slot_chosen = plan.order[i];

	put(L"fwbuild-launcher: starting ");
	put_slot_where(slot_chosen);
	put(L" sha256 ");
	put_hash(fwb_pin.sha256);
	put(L" from slot ");
	put_slot(slot_chosen);
	put(L": ");
	switch (code) {
	case FWB_WHY_CONFIRMED:
		put(L"confirmed slot");
		break;
	case FWB_WHY_PENDING:
		put(L"pending slot, trial boot");
		break;
	case FWB_WHY_REFUSED:
		why[why_n] = 0;
		put(why);
		break;
	default:
		break;
	}
	if (plan.stale) {
		if (code != FWB_WHY_UNCONFIRMED)
			put(L"; ");
		put(L"slot ");
		put_slot(plan.stale);
		put(L" tried and never confirmed");
	} else if (code == FWB_WHY_UNCONFIRMED && plan.skipped) {
		put(L"slot ");
		put_slot(plan.skipped);
		put(L" failed before");
	}
	if (EFI_ERROR(status)) {
		put(L" (slot state not saved: SetVariable returned 0x");
		put_hex(status, 16);
		put(L")");
	}
	flush();
	return EFI_SUCCESS;
}

static EFI_LOAD_FILE_PROTOCOL loader = { load_file };

static UINTN wlen(const CHAR16 *s)
{
	UINTN n = 0;

	while (s[n])
		n++;
	return n;
}

static int hexval(CHAR16 c)
{
	if (c >= L'0' && c <= L'9')
		return c - L'0';
	if (c >= L'A' && c <= L'F')
		return c - L'A' + 10;
	return -1;
}

/* option_number parses "Boot####" (upper-case hex, as the spec requires). */
static int option_number(const CHAR16 *name)
{
	int i, v = 0;

	if (name[0] != L'B' || name[1] != L'o' || name[2] != L'o' || name[3] != L't' || name[8] != 0)
		return -1;
	for (i = 4; i < 8; i++) {
		int d = hexval(name[i]);
		if (d < 0)
			return -1;
		v = v * 16 + d;
	}
	return v;
}

/*
 * offer_boot_option creates (or finds, on a board whose variables survive)
 * the Boot#### option for the launcher's device and makes it BootNext, so
 * it is tried first on this boot and the boot order follows if it fails.
 * BootOrder itself is left to the owner. Its buffers come from pool, so
 * the driver's image stays a few KB.
 */
static EFI_STATUS offer_boot_option(void)
{
	UINT8 option[512], old[512];
	UINTN desc = (wlen(fwb_pin.description) + 1) * sizeof(CHAR16);
	UINTN optlen = 4 + 2 + desc + sizeof(devpath);
	UINTN cap = 256;
	UINT8 *used = NULL;
	CHAR16 *name = NULL;
	EFI_STATUS status;
	int mine = -1, i;

	if (optlen > sizeof(option))
		return EFI_BAD_BUFFER_SIZE;
	*(UINT32 *)option = LOAD_OPTION_ACTIVE;
	*(UINT16 *)(option + 4) = sizeof(devpath);
	copy(option + 6, fwb_pin.description, desc);
	copy(option + 6 + desc, &devpath, sizeof(devpath));

	setup_step = L"AllocatePool";
	status = bs->AllocatePool(EfiBootServicesData, 65536 / 8, (VOID **)&used);
	if (EFI_ERROR(status))
		return status;
	bs->SetMem(used, 65536 / 8, 0);
	status = bs->AllocatePool(EfiBootServicesData, cap, (VOID **)&name);
	if (EFI_ERROR(status))
		goto out;
	name[0] = 0;
	setup_step = L"GetNextVariableName";
	for (;;) {
		UINTN n = cap, oldlen = sizeof(old);
		EFI_GUID g;
		int num;

		status = rt->GetNextVariableName(&n, name, &g);
		if (status == EFI_BUFFER_TOO_SMALL) {
			/* A longer name follows: grow the buffer, keeping the current name. */
			CHAR16 *bigger;
			status = bs->AllocatePool(EfiBootServicesData, n, (VOID **)&bigger);
			if (EFI_ERROR(status))
				goto out;
			copy(bigger, name, cap);
			bs->FreePool(name);
			name = bigger;
			cap = n;
			continue;
		}
		if (status == EFI_NOT_FOUND)
			break;
		if (EFI_ERROR(status))
			goto out;
		if (!same(&g, &global_guid, sizeof(g)) || (num = option_number(name)) < 0)
			continue;
		used[num / 8] |= 1 << (num % 8);
		if (mine < 0 && rt->GetVariable(name, &global_guid, NULL, &oldlen, old) == EFI_SUCCESS &&
		    oldlen == optlen && same(old, option, optlen))
			mine = num;
	}
	if (mine < 0) {
		for (i = 0; i < 65536 && (used[i / 8] & (1 << (i % 8))); i++)
			;
		status = EFI_OUT_OF_RESOURCES;
		if (i == 65536)
			goto out;
		mine = i;
		static const CHAR16 hex[] = L"0123456789ABCDEF";
		CHAR16 var[9] = { L'B', L'o', L'o', L't', hex[(i >> 12) & 15], hex[(i >> 8) & 15], hex[(i >> 4) & 15], hex[i & 15], 0 };
		setup_step = L"SetVariable Boot####";
		status = rt->SetVariable(var, &global_guid,
					 EFI_VARIABLE_NON_VOLATILE | EFI_VARIABLE_BOOTSERVICE_ACCESS | EFI_VARIABLE_RUNTIME_ACCESS,
					 optlen, option);
		if (EFI_ERROR(status))
			goto out;
	}
	UINT16 next = (UINT16)mine;
	setup_step = L"SetVariable BootNext";
	status = rt->SetVariable(L"BootNext", &global_guid,
				 EFI_VARIABLE_NON_VOLATILE | EFI_VARIABLE_BOOTSERVICE_ACCESS | EFI_VARIABLE_RUNTIME_ACCESS,
				 sizeof(next), &next);
out:
	if (name)
		bs->FreePool(name);
	bs->FreePool(used);
	return status;
}

/* report reports, once consoles exist, a boot option that could not be offered. */
static VOID EFIAPI report(EFI_EVENT event, VOID *ctx)
{
	(void)ctx;
	if (!EFI_ERROR(setup_status) || offered) {
		bs->CloseEvent(event);
		return;
	}
	put(L"fwbuild-launcher: FAILED ");
	put_where();
	put(L": no boot option: ");
	put(setup_step);
	put(L" returned 0x");
	put_hex(setup_status, 16);
	put(L"; continuing with the platform's boot order");
	flush();
	bs->CloseEvent(event);
}

/* crt0 calls efi_main with the System V ABI: no EFIAPI here. */
EFI_STATUS efi_main(EFI_HANDLE image, EFI_SYSTEM_TABLE *systab)
{
	EFI_HANDLE handle = NULL;
	EFI_EVENT event;
	EFI_STATUS status;

	(void)image;
	st = systab;
	bs = systab->BootServices;
	rt = systab->RuntimeServices;
	copy(&devpath.vendor.Guid, &vendor_guid, sizeof(EFI_GUID));

	status = bs->InstallMultipleProtocolInterfaces(&handle, &devpath_guid, &devpath, &loadfile_guid, &loader, NULL);
	if (EFI_ERROR(status))
		return status; /* the driver unloads; the platform boots as before */
	setup_status = offer_boot_option();
	bs->CreateEventEx(EVT_NOTIFY_SIGNAL, TPL_CALLBACK, report, NULL, &ready_to_boot_guid, &event);
	return EFI_SUCCESS;
}
