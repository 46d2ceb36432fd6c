// One Hopper warpgroup MMA (wgmma, m64n8k16, f16 inputs, f32 accumulators). Needs -arch=sm_90a.
// The descriptors come in as arguments: the kernel is compiled for its SASS, never run.
extern "C" __global__ void wgmma_m64n8k16(float* out, unsigned long long desc_a, unsigned long long desc_b) {
    float d0 = 0.f, d1 = 0.f, d2 = 0.f, d3 = 0.f;
    asm volatile("wgmma.fence.sync.aligned;\n");
    asm volatile(
        "wgmma.mma_async.sync.aligned.m64n8k16.f32.f16.f16 {%0, %1, %2, %3}, %4, %5, 1, 1, 1, 0, 0;\n"
        : "+f"(d0), "+f"(d1), "+f"(d2), "+f"(d3)
        : "l"(desc_a), "l"(desc_b));
    asm volatile("wgmma.commit_group.sync.aligned;\n");
    asm volatile("wgmma.wait_group.sync.aligned 0;\n");
    float4* o = reinterpret_cast<float4*>(out);
    o[threadIdx.x] = make_float4(d0, d1, d2, d3);
}
