#include "slots.h"

static UINT8 bit(UINT8 slot) { return slot == 'a' ? 1 : slot == 'b' ? 2 : 0; }
static UINT8 other(UINT8 slot) { return slot == 'a' ? 'b' : 'a'; }
static int valid(UINT8 c, int none) { return c == 'a' || c == 'b' || (none && c == 0); }

int fwb_slots_parse(const UINT8 *d, UINTN n, struct fwb_slots *s)
{
	s->confirmed = 'a';
	s->trying = s->pending = s->failed = 0;
	if (d == 0 || n != FWB_SLOTS_SIZE || d[0] != FWB_SLOTS_VERSION || !valid(d[1], 0) || !valid(d[2], 1) ||
	    !valid(d[3], 1) || (d[4] & ~3) || d[5] || d[6] || d[7])
		return 0;
	s->confirmed = d[1];
	s->trying = d[2];
	s->pending = d[3];
	s->failed = d[4];
	return 1;
}

void fwb_slots_encode(const struct fwb_slots *s, UINT8 out[FWB_SLOTS_SIZE])
{
	int i;

	for (i = 0; i < FWB_SLOTS_SIZE; i++)
		out[i] = 0;
	out[0] = FWB_SLOTS_VERSION;
	out[1] = s->confirmed;
	out[2] = s->trying;
	out[3] = s->pending;
	out[4] = s->failed;
}

static void add(struct fwb_plan *p, const struct fwb_slots *s, UINT8 slot)
{
	int i;

	if (s->failed & bit(slot)) {
		if (!p->skipped && slot != p->stale)
			p->skipped = slot;
		return;
	}
	for (i = 0; i < p->n; i++)
		if (p->order[i] == slot)
			return;
	p->order[p->n++] = slot;
}

void fwb_slots_plan(struct fwb_slots *s, struct fwb_plan *p)
{
	p->n = 0;
	p->stale = p->skipped = 0;
	if (s->trying) {
		/* Started on an earlier boot and never confirmed: a reset, a
		 * crash or a hang (after a watchdog's reset) came first. */
		p->stale = s->trying;
		s->failed |= bit(s->trying);
		if (s->pending == s->trying)
			s->pending = 0;
		s->trying = 0;
	}
	if (s->pending && s->pending != s->confirmed)
		add(p, s, s->pending);
	add(p, s, s->confirmed);
	add(p, s, other(s->confirmed));
}

void fwb_slots_refused(struct fwb_slots *s, UINT8 slot)
{
	if (s->pending == slot) {
		s->pending = 0;
		s->failed |= bit(slot);
	}
}

void fwb_slots_started(struct fwb_slots *s, UINT8 slot)
{
	if (s->pending == slot)
		s->pending = 0;
	if (slot != s->confirmed)
		s->trying = slot;
}

int fwb_slots_why(const struct fwb_slots *s, const struct fwb_plan *p, int i)
{
	UINT8 slot = p->order[i];

	if (i > 0)
		return FWB_WHY_REFUSED;
	if (slot == s->pending && slot != s->confirmed)
		return FWB_WHY_PENDING;
	if (slot == s->confirmed && !p->stale)
		return FWB_WHY_CONFIRMED;
	return FWB_WHY_UNCONFIRMED;
}
