// Bulk transfer endpoints for bench/multinode.ts.
//   node bulk-source.mjs serve [HOST] [PORT]   each connection: reads "N\n", writes N bytes, ends
//                                              (HOST defaults to $POD_IP, PORT to 9000)
//   node bulk-source.mjs fetch HOST PORT MB    asks for MB MiB, prints {"mb":…,"ms":…,"mbps":…}
import net from 'node:net';

const [mode, a, b, c] = process.argv.slice(2);
const CHUNK = Buffer.alloc(64 << 10, 0x61);

if (mode === 'serve') {
  const host = a || process.env.POD_IP || '127.0.0.1';
  const port = Number(b || 9000);
  net.createServer((s) => {
    let line = '';
    s.on('error', () => {});
    s.on('data', function onData(d) {
      line += d.toString('latin1');
      const nl = line.indexOf('\n');
      if (nl < 0) return;
      s.off('data', onData);
      let left = Math.min(Number(line.slice(0, nl)) || 0, 8 * 2 ** 30);
      const pump = () => {
        while (left > 0) {
          const n = Math.min(left, CHUNK.length);
          left -= n;
          if (!s.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) return void s.once('drain', pump);
        }
        s.end();
      };
      pump();
    });
  }).listen(port, host);
  process.on('SIGTERM', () => process.exit(0));
} else if (mode === 'fetch') {
  const bytes = Math.round(Number(c) * (1 << 20));
  const t0 = performance.now();
  let got = 0;
  const s = net.connect(Number(b), a, () => s.write(`${bytes}\n`));
  s.on('data', (d) => (got += d.length));
  s.on('end', () => {
    const ms = performance.now() - t0;
    process.stdout.write(`${JSON.stringify({ mb: got / (1 << 20), ms, mbps: got / (1 << 20) / (ms / 1000) })}\n`);
  });
  s.on('error', (e) => {
    process.stdout.write(`${JSON.stringify({ error: e.message, mb: got / (1 << 20) })}\n`);
    process.exitCode = 1;
  });
  setTimeout(() => {
    process.stdout.write(`${JSON.stringify({ error: 'timeout', mb: got / (1 << 20) })}\n`);
    process.exit(1);
  }, 60_000).unref();
} else {
  console.error('usage: bulk-source.mjs serve [HOST] [PORT] | fetch HOST PORT MB');
  process.exit(2);
}
