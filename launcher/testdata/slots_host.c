/*
 * Host driver for launcher/src/slots.c (TestSlotsStateMachine): one boot's
 * decision. Arguments: the state variable as hex ("-" for absent), then
 * whether slot a's and slot b's bytes pass (1/0). Prints
 * "start=<slot|-> why=<code> stale=<slot|-> skipped=<slot|-> state=<hex>".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "slots.h"

int main(int argc, char **argv)
{
	UINT8 data[FWB_SLOTS_SIZE], out[FWB_SLOTS_SIZE];
	UINTN n = 0;
	struct fwb_slots s;
	struct fwb_plan p;
	int i, why = 0;
	UINT8 start = 0;

	if (argc != 4)
		return 2;
	if (strcmp(argv[1], "-") != 0) {
		for (n = 0; argv[1][2 * n] && argv[1][2 * n + 1] && n < sizeof(data); n++) {
			unsigned v;
			sscanf(argv[1] + 2 * n, "%2x", &v);
			data[n] = (UINT8)v;
		}
	}
	fwb_slots_parse(strcmp(argv[1], "-") ? data : NULL, n, &s);
	fwb_slots_plan(&s, &p);
	for (i = 0; i < p.n; i++) {
		UINT8 slot = p.order[i];
		if (atoi(slot == 'a' ? argv[2] : argv[3])) {
			start = slot;
			why = fwb_slots_why(&s, &p, i);
			fwb_slots_started(&s, slot);
			break;
		}
		fwb_slots_refused(&s, slot);
	}
	fwb_slots_encode(&s, out);
	printf("start=%c why=%d stale=%c skipped=%c state=", start ? start : '-', why, p.stale ? p.stale : '-',
	       p.skipped ? p.skipped : '-');
	for (i = 0; i < FWB_SLOTS_SIZE; i++)
		printf("%02x", out[i]);
	printf("\n");
	return 0;
}
