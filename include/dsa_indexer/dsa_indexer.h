// Umbrella header of dsa-indexer's public, torch-free C++ API.
#pragma once

#include "dsa_indexer/error.h"
#include "dsa_indexer/logits_head_gate.h"
