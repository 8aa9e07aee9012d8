/** The run-size flags bench/multinode.ts and bench/tunnel.ts share: rounds, seconds per figure, MB per bulk transfer. */
export interface TransferSize {
  rounds: number;
  seconds: number;
  mb: number;
}

export const TRANSFER_DEFAULTS: TransferSize = { rounds: 3, seconds: 5, mb: 256 };

const clamp = (v: string | undefined, lo: number, hi: number): number => Math.min(hi, Math.max(lo, Number(v) || lo));

/** Takes `--rounds N` (1–10), `--seconds S` (1–30) or `--mb M` (1–2048) into `a`; false for any other flag. */
export function takeTransferFlag(a: TransferSize, flag: string | undefined, v: string | undefined): boolean {
  switch (flag) {
    case '--rounds': a.rounds = clamp(v, 1, 10); return true;
    case '--seconds': a.seconds = clamp(v, 1, 30); return true;
    case '--mb': a.mb = clamp(v, 1, 2048); return true;
    default: return false;
  }
}
