// @switchyard/client: call a Switchyard server with the reference docs' code-first API.

export { Switchyard, Resource, Routes, Healthchecks } from './client.js';
export type { SwitchyardOptions, Where, DefineSpec } from './client.js';
export { DataTypes, FeatureEventTypes, OptionBuilder, QuotaContext, FallbackContext, HealthcheckContext, ProbeBuilder } from './builders.js';
export { toTemplate } from './mapping.js';
export type { Mapping } from './mapping.js';
export * from './errors.js';
export type * from './types.js';
