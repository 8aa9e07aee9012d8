export { DnsServer } from './server.js';
export type { DnsOptions } from './server.js';
export { lookup, SCHEMA_VERSION } from './lookup.js';
export type { DnsView, DnsService, DnsEndpoint, DnsPort, LookupOptions } from './lookup.js';
export { TYPE, RCODE, CLASS } from './records.js';
export type { Answer, RR } from './records.js';
