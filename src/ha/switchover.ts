/**
 * Why an active cannot start a planned switchover yet, for a moment only (docs/ARCHITECTURE.md
 * §6): its standby is (re)joining, or the arbiter has not named it. `HaNode.switchover` answers
 * with these; `takeover switchover` waits them out (until its timeout). Any other refusal is final.
 */
export const SWITCHOVER_NOT_YET = {
  noStandby: 'no standby is attached: there is nobody to hand the connections to',
  catchingUp: 'the standby is still catching up (bootstrap): try again once it is synced',
  arbiter: 'the arbiter does not name the standby yet: try again in a moment',
} as const;
