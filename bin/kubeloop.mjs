#!/usr/bin/env node
// Entry point: load the TypeScript sources through tsx so `npx kubeloop` works
// right after `npm ci`, with no build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
