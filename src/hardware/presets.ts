/**
 * Hardware presets. Vendor figures from ../shared/REFERENCE.md (dense, per GPU);
 * memory capacities are the GiB that nvidia-smi reports for each part. Every
 * field can be overridden in a scenario.
 */

export interface GpuSpec {
  name: string;
  /** Dense fp16/bf16 tensor-core peak, FLOP/s. */
  flopsPerSecond: number;
  /** Peak used when training in fp32 (TF32 tensor cores where the part has them), FLOP/s. */
  fp32FlopsPerSecond: number;
  /** Dense fp8 tensor-core peak, FLOP/s; absent on parts without fp8 (before Hopper). */
  fp8FlopsPerSecond?: number;
  /** False on parts whose tensor cores have no bf16 (before Ampere): their 16-bit peak is fp16's. */
  bf16?: false;
  /** HBM capacity, bytes. */
  memoryBytes: number;
  /** HBM bandwidth, bytes/s. */
  memoryBandwidthBytesPerSecond: number;
  /** NVLink bandwidth per direction per GPU, bytes/s. */
  nvlinkBandwidthBytesPerSecond: number;
  /** Achievable fraction of peak FLOP/s for the step's large GEMMs (roofline compute roof). */
  computeEfficiency: number;
  /** Achievable fraction of HBM bandwidth (roofline memory roof). */
  memoryEfficiency: number;
  /** FLOPs per layer and pass at which the achieved compute efficiency is half of computeEfficiency. */
  efficiencyHalfSize: number;
  /**
   * Achievable fraction of the peak for FlashAttention kernels in a training step (forward and backward), where it
   * differs from a GEMM's: FlashAttention-2 on A100, FlashAttention-3 on H100 (FLASH_ATTENTION_EFFICIENCY). Absent:
   * as the GEMMs run.
   */
  flashAttentionEfficiency?: number;
}

export interface LinkSpec {
  /** Per direction, bytes/s. */
  bandwidthBytesPerSecond: number;
  /** Per hop, seconds. */
  latencySeconds: number;
}

export interface NodeSpec {
  name: string;
  /** GPU preset the node ships with. */
  gpu: string;
  gpusPerNode: number;
  /** GPUs all reach each other over NVLink through NVSwitch. */
  nvswitch: boolean;
  nvlinkLatencySeconds: number;
  /** GPU to PCIe switch, and each PCIe switch to the CPU. */
  pcie: LinkSpec;
  /** GPUs (and NICs) sharing one PCIe switch and its uplink to the CPU. */
  gpusPerPcieSwitch: number;
  /** InfiniBand adapters, one per rail. */
  nics: number;
  nic: LinkSpec;
  /** Host (CPU) memory, bytes. */
  hostMemoryBytes: number;
  /** Parameters per second the node's CPUs update with Adam (all its GPUs' shares together). */
  hostOptimizerParamsPerSecond: number;
  /** Local NVMe capacity, bytes (all drives together). */
  nvmeBytes: number;
  nvmeReadBytesPerSecond: number;
  nvmeWriteBytesPerSecond: number;
  nvmeLatencySeconds: number;
}

const GiB = 1024 ** 3;
const GB = 1e9;
const TB = 1e12;
const us = 1e-6;

/** Calibrated on measured A100 step times (docs/validation.md); the same for every GPU until others are measured. */
export const COMPUTE_EFFICIENCY = 0.75;
export const EFFICIENCY_HALF_SIZE = 8e10;
/** Host time to issue one layer's forward kernels (framework and launch overhead), seconds. */
export const HOST_OVERHEAD_PER_LAYER = 0.8e-3;
/** Software time of one pipeline transfer (framework send/receive setup and synchronisation): none unless a scenario says; Megatron-DeepSpeed measures 2 ms (docs/validation.md). */
export const TRANSFER_OVERHEAD = 0;
/**
 * Parameters per second a node's CPUs update with Adam: DeepSpeed's CPU-Adam updates 1B parameters in about
 * 0.22 s on a dual-socket server (Ren et al., ZeRO-Offload, ATC 2021).
 */
export const HOST_ADAM_RATE = 4.5e9;
/** Software overhead per algorithm step of a collective, seconds. */
export const COLLECTIVE_STEP_LATENCY = 5e-6;
/**
 * Fraction of the 16-bit peak FlashAttention reaches in a training step, forward and backward together:
 * FlashAttention-2 reaches 50-73% of the A100's (Dao, arXiv:2307.08691), its backward at the low end;
 * FlashAttention-3 up to 75% of the H100's in the forward (740 TFLOP/s) and less in the backward (Shah et al.,
 * arXiv:2407.08608), where FlashAttention-2 reached 35%. FlashAttention-2 does not run on V100.
 */
export const FLASH_ATTENTION_EFFICIENCY = { a100: 0.6, h100: 0.6 };

export const GPU_PRESETS: Record<string, GpuSpec> = {
  'v100-32gb': {
    name: 'v100-32gb',
    bf16: false,
    flopsPerSecond: 125e12,
    fp32FlopsPerSecond: 15.7e12,
    memoryBytes: 32 * GiB,
    memoryBandwidthBytesPerSecond: 0.9 * TB,
    nvlinkBandwidthBytesPerSecond: 150 * GB,
    computeEfficiency: COMPUTE_EFFICIENCY,
    memoryEfficiency: 0.8,
    efficiencyHalfSize: EFFICIENCY_HALF_SIZE,
  },
  'a100-40gb': {
    name: 'a100-40gb',
    flopsPerSecond: 312e12,
    fp32FlopsPerSecond: 156e12,
    memoryBytes: 40 * GiB,
    memoryBandwidthBytesPerSecond: 1.555 * TB,
    nvlinkBandwidthBytesPerSecond: 300 * GB,
    computeEfficiency: COMPUTE_EFFICIENCY,
    memoryEfficiency: 0.8,
    efficiencyHalfSize: EFFICIENCY_HALF_SIZE,
    flashAttentionEfficiency: FLASH_ATTENTION_EFFICIENCY.a100,
  },
  'a100-80gb': {
    name: 'a100-80gb',
    flopsPerSecond: 312e12,
    fp32FlopsPerSecond: 156e12,
    memoryBytes: 80 * GiB,
    memoryBandwidthBytesPerSecond: 2.039 * TB,
    nvlinkBandwidthBytesPerSecond: 300 * GB,
    computeEfficiency: COMPUTE_EFFICIENCY,
    memoryEfficiency: 0.8,
    efficiencyHalfSize: EFFICIENCY_HALF_SIZE,
    flashAttentionEfficiency: FLASH_ATTENTION_EFFICIENCY.a100,
  },
  'h100-sxm': {
    name: 'h100-sxm',
    flopsPerSecond: 989e12,
    fp32FlopsPerSecond: 494e12,
    fp8FlopsPerSecond: 1979e12,
    memoryBytes: 80 * GiB,
    memoryBandwidthBytesPerSecond: 3.35 * TB,
    nvlinkBandwidthBytesPerSecond: 450 * GB,
    computeEfficiency: COMPUTE_EFFICIENCY,
    memoryEfficiency: 0.8,
    efficiencyHalfSize: EFFICIENCY_HALF_SIZE,
    flashAttentionEfficiency: FLASH_ATTENTION_EFFICIENCY.h100,
  },
  h200: {
    name: 'h200',
    flopsPerSecond: 989e12,
    fp32FlopsPerSecond: 494e12,
    fp8FlopsPerSecond: 1979e12,
    memoryBytes: 141 * GiB,
    memoryBandwidthBytesPerSecond: 4.8 * TB,
    nvlinkBandwidthBytesPerSecond: 450 * GB,
    computeEfficiency: COMPUTE_EFFICIENCY,
    memoryEfficiency: 0.8,
    efficiencyHalfSize: EFFICIENCY_HALF_SIZE,
    flashAttentionEfficiency: FLASH_ATTENTION_EFFICIENCY.h100,
  },
};

export const NODE_PRESETS: Record<string, NodeSpec> = {
  // DGX-2: 16 V100 behind NVSwitch, 8 x 100 Gb/s InfiniBand, PCIe Gen3, 1.5 TB host memory, 8 x 3.84 TB NVMe.
  'dgx-2': {
    name: 'dgx-2',
    gpu: 'v100-32gb',
    gpusPerNode: 16,
    nvswitch: true,
    nvlinkLatencySeconds: 0.5 * us,
    pcie: { bandwidthBytesPerSecond: 16 * GB, latencySeconds: 0.5 * us },
    gpusPerPcieSwitch: 2,
    nics: 8,
    nic: { bandwidthBytesPerSecond: 12.5 * GB, latencySeconds: 1 * us },
    hostMemoryBytes: 1.5 * TB,
    hostOptimizerParamsPerSecond: HOST_ADAM_RATE,
    nvmeBytes: 30.72 * TB,
    nvmeReadBytesPerSecond: 24 * GB,
    nvmeWriteBytesPerSecond: 16 * GB,
    nvmeLatencySeconds: 20 * us,
  },
  // DGX A100: 8 A100 80GB behind NVSwitch, 8 x 200 Gb/s HDR, PCIe Gen4, 2 TB host memory, 4 x 3.84 TB NVMe.
  'dgx-a100': {
    name: 'dgx-a100',
    gpu: 'a100-80gb',
    gpusPerNode: 8,
    nvswitch: true,
    nvlinkLatencySeconds: 0.5 * us,
    pcie: { bandwidthBytesPerSecond: 32 * GB, latencySeconds: 0.5 * us },
    gpusPerPcieSwitch: 2,
    nics: 8,
    nic: { bandwidthBytesPerSecond: 25 * GB, latencySeconds: 1 * us },
    hostMemoryBytes: 2 * TB,
    hostOptimizerParamsPerSecond: HOST_ADAM_RATE,
    nvmeBytes: 15.36 * TB,
    nvmeReadBytesPerSecond: 24 * GB,
    nvmeWriteBytesPerSecond: 12 * GB,
    nvmeLatencySeconds: 20 * us,
  },
  // DGX H100: 8 H100 behind NVSwitch, 8 x 400 Gb/s NDR, PCIe Gen5, 2 TB host memory, 8 x 3.84 TB NVMe.
  'dgx-h100': {
    name: 'dgx-h100',
    gpu: 'h100-sxm',
    gpusPerNode: 8,
    nvswitch: true,
    nvlinkLatencySeconds: 0.5 * us,
    pcie: { bandwidthBytesPerSecond: 64 * GB, latencySeconds: 0.5 * us },
    gpusPerPcieSwitch: 2,
    nics: 8,
    nic: { bandwidthBytesPerSecond: 50 * GB, latencySeconds: 1 * us },
    hostMemoryBytes: 2 * TB,
    hostOptimizerParamsPerSecond: HOST_ADAM_RATE,
    nvmeBytes: 30.72 * TB,
    nvmeReadBytesPerSecond: 48 * GB,
    nvmeWriteBytesPerSecond: 24 * GB,
    nvmeLatencySeconds: 20 * us,
  },
};
