// Counts heap allocations of the whole process while `counting` is set, for
// the tests that prove a hot path allocates nothing. AddressSanitizer owns
// malloc in sanitizer builds, so the count is taken in the ordinary build only.
#ifndef KILN_TEST_ALLOCATION_COUNTER_H
#define KILN_TEST_ALLOCATION_COUNTER_H

#include <atomic>

#if defined(__SANITIZE_ADDRESS__)
#define KILN_COUNT_ALLOCATIONS 0
#else
#define KILN_COUNT_ALLOCATIONS 1
#endif

extern std::atomic<bool> counting;
extern std::atomic<long> allocations;

#endif
