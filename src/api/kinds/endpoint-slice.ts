/** discovery.k8s.io/v1 EndpointSlice: served from the Endpoints (server/slices.ts), never written by clients' controllers here. */
import { defineKind, infoOf } from '../kind.js';

export const endpointSlice = defineKind({
  info: infoOf('EndpointSlice', 'discovery.k8s.io/v1', 'endpointslices'),
  model: 'V1EndpointSlice',
});
