/**
 * The stored kernel fixtures (test/fixtures/kernel.pcap, captured by scripts/capture-fixtures.sh)
 * judged against tshark's decoding of them (kernel.fields.tsv).
 */
import { readFileSync } from 'node:fs';
import { judgeKernelCapture } from '../support/kernel-capture.ts';

const dir = new URL('../fixtures/', import.meta.url);
judgeKernelCapture('stored kernel fixtures', () => ({
  pcap: new Uint8Array(readFileSync(new URL('kernel.pcap', dir))),
  tsv: readFileSync(new URL('kernel.fields.tsv', dir), 'utf8'),
}));
