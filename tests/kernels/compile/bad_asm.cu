// Inline PTX that ptxas rejects; the error must point at the asm statement (line 5).
extern "C" __global__ void bad_asm(unsigned* y) {
    unsigned v = threadIdx.x;
    y[0] = v;
    asm volatile("bogus.instr.u32 %0;" : : "r"(v));
}
