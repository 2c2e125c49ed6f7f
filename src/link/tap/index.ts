/**
 * Linux TAP devices as LinkDevices: `TapDevice.open({ name, mtu?, pcap?, netns? })`. Needs
 * CAP_NET_ADMIN (root) to create a device; the caller configures addresses and brings the link up
 * with `ip`.
 */
export { TapError, type TapStep } from './errors.ts';
export { type TapCounters, TapDevice, type TapOptions } from './tap.ts';
