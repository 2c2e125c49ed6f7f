/**
 * What went wrong opening a TAP device, as one sentence that says what to do. The caller sees
 * this message, never a stack from koffi.
 */
import { errnoName } from './ffi.ts';

/** The step of `TapDevice.open` that failed. */
export type TapStep = 'open' | 'attach' | 'mtu' | 'netns' | 'eventfd';

export class TapError extends Error {
  constructor(
    message: string,
    /** Errno name (`EPERM`, ...) when a system call failed. */
    readonly code: string | undefined,
  ) {
    super(message);
    this.name = 'TapError';
  }
}

const CAP =
  'run as root or grant the capability (setcap cap_net_admin+ep "$(command -v node)"), or create it beforehand for this user with `ip tuntap add name NAME mode tap user $(id -u)`';

/** The message for a failed system call of `open` (`detail`: the MTU or the namespace, when relevant). */
export function openErrorMessage(name: string, step: TapStep, errno: number, detail?: string): string {
  const e = errnoName(errno);
  const dev = `TAP device ${name}`;
  if (step === 'netns') {
    if (e === 'ENOENT')
      return `Network namespace ${detail} does not exist: create it with \`ip netns add ${detail}\`.`;
    if (e === 'EPERM' || e === 'EACCES')
      return `Entering network namespace ${detail} needs CAP_SYS_ADMIN: run as root.`;
    return `Entering network namespace ${detail} failed with ${e}: check that /run/netns/${detail} is a network namespace.`;
  }
  if (step === 'open' && (e === 'EPERM' || e === 'EACCES'))
    return `Opening ${dev} needs read-write access to /dev/net/tun and CAP_NET_ADMIN: run as root, or make /dev/net/tun accessible (chmod 0666 /dev/net/tun, the usual mode) and grant the capability (setcap cap_net_admin+ep "$(command -v node)").`;
  if (e === 'EPERM' || e === 'EACCES') {
    const what = step === 'mtu' ? `Setting the MTU of ${dev}` : `Opening ${dev}`;
    return `${what} needs CAP_NET_ADMIN: ${CAP.replace('NAME', name)}.`;
  }
  if (step === 'open' && e === 'ENOENT')
    return `Opening ${dev} failed: /dev/net/tun does not exist; load the tun module (modprobe tun) or, in a container, pass the device in (--device /dev/net/tun).`;
  if (step === 'open' && (e === 'EMFILE' || e === 'ENFILE'))
    return `Opening ${dev} failed with ${e}: the process is out of file descriptors; raise the limit (ulimit -n) or close some.`;
  if (step === 'attach' && e === 'EBUSY')
    return `Opening ${dev} failed with EBUSY: another process has it open; stop that process or pick another name.`;
  if (step === 'attach' && e === 'EINVAL')
    return `Opening ${dev} failed with EINVAL: an interface of that name exists but is not a single-queue TAP device; delete it (ip link del ${name}) or pick another name.`;
  if (step === 'mtu' && e === 'EINVAL')
    return `Setting the MTU of ${dev} to ${detail} failed with EINVAL: use an MTU between 68 and 65521.`;
  const doing =
    step === 'mtu'
      ? `Setting the MTU of ${dev}`
      : step === 'eventfd'
        ? `Creating the wake-up eventfd for ${dev}`
        : `Opening ${dev}`;
  return `${doing} failed with ${e}: check the device with \`ip link show ${name}\` and try again.`;
}

/** Why `name` cannot be an interface name (Linux dev_valid_name), or undefined when it can. */
export function invalidNameMessage(name: string): string | undefined {
  const bytes = new TextEncoder().encode(name).length;
  if (
    bytes === 0 ||
    bytes >= 16 ||
    name === '.' ||
    name === '..' ||
    /[/:\s]/.test(name) ||
    name.includes('\0')
  )
    return `TAP device name ${JSON.stringify(name)} is not a valid interface name: use 1 to 15 characters without '/', ':' or spaces.`;
  return undefined;
}
