/** The relay pair on the simulator, part 4 of 4 of the seeds (see sim-seeds.ts). */
import { relaySeeds } from './sim-seeds.ts';

relaySeeds(3, 4, import.meta.url);
