#include "launcher.h"
const struct fwb_pin fwb_pin = {
	.source = FWB_SOURCE_REGION,
	.address = 0xff000000,
	.size = 4096,
	.sha256 = {0},
	.description = L"fwbuild payload",
};
