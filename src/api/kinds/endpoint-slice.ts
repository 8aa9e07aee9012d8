/** discovery.k8s.io/v1 EndpointSlice: served from the Endpoints (server/slices.ts), never written by clients' controllers here. */
import { defineKind, kindInfo } from '../kind.js';

export const endpointSlice = defineKind({
  info: kindInfo('EndpointSlice', 'discovery.k8s.io/v1', 'endpointslices'),
  model: 'V1EndpointSlice',
});
