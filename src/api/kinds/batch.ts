/** The batch/v1 kinds. */
import { defaultCronJob, defaultJob } from '../defaults.js';
import { defineKind, infoOf } from '../kind.js';
import { validateCronJob, validateJob } from '../validation/workloads.js';
import { workloadValidator } from './workload.js';

export const job = defineKind({
  info: infoOf('Job', 'batch/v1', 'jobs', { categories: ['all'], hasStatus: true }),
  model: 'V1Job',
  defaults: defaultJob,
  validate: workloadValidator('Job', validateJob),
});

export const cronJob = defineKind({
  info: infoOf('CronJob', 'batch/v1', 'cronjobs', { shortNames: ['cj'], categories: ['all'], hasStatus: true }),
  model: 'V1CronJob',
  defaults: defaultCronJob,
  validate: workloadValidator('CronJob', validateCronJob),
});
