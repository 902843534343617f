/**
 * @module bench/machine
 * What the numbers were measured on: CPUs, memory, kernel, Node and the versions of the peers.
 */
import os from 'node:os';
import { run } from './proc.ts';

export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  memoryMiB: number;
  kernel: string;
  platform: string;
  node: string;
  tools: Record<string, string>;
}

const TOOLS: [name: string, args: string[]][] = [
  ['docker-registry', ['--version']],
  ['skopeo', ['--version']],
  ['nginx', ['-v']],
  ['wrk', ['-v']],
  ['curl', ['--version']],
];

export async function machineInfo(): Promise<MachineInfo> {
  const tools: Record<string, string> = {};
  for (const [name, args] of TOOLS) {
    const r = await run(name, args, { timeoutMs: 5_000 }).catch(() => undefined);
    tools[name] = `${r?.stdout ?? ''}${r?.stderr ?? ''}`.trim().split('\n')[0] ?? '';
  }
  return {
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? '',
    memoryMiB: Math.round(os.totalmem() / 2 ** 20),
    kernel: os.release(),
    platform: `${os.platform()} ${os.arch()}`,
    node: process.version,
    tools,
  };
}
