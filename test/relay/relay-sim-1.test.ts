/** The relay pair on the simulator, part 2 of 4 of the seeds (see sim-seeds.ts). */
import { relaySeeds } from './sim-seeds.ts';

relaySeeds(1, 4, import.meta.url);
