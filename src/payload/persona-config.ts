/**
 * The bot's persona config, as the CRM hands it to the voice agent. callsync reads only the
 * ids it must echo back to the CRM (campaign, client, voice agent) and keeps the rest as is.
 * The same schema validates it in the agent job (job metadata) and in the supervisor
 * (`POST /v1/calls`), so a malformed config is refused at the first place it appears.
 */
import { z } from 'zod';

const nonEmptyId = z.string().trim().min(1);

export const personaConfigSchema = z.looseObject({
  campaigns: z
    .array(
      z.looseObject({
        _id: nonEmptyId,
        client: nonEmptyId,
        voiceAgents: z.array(z.looseObject({ _id: nonEmptyId })).min(1),
      }),
    )
    .min(1),
});

export type PersonaConfig = z.infer<typeof personaConfigSchema>;

/** The three ids the CRM needs, taken from `campaigns[0]` and `campaigns[0].voiceAgents[0]`. */
export interface CampaignIds {
  campaignId: string;
  voiceAgentId: string;
  client: string;
}

export function campaignIdsOf(config: PersonaConfig): CampaignIds {
  // The schema guarantees both arrays are non-empty.
  const campaign = config.campaigns[0]!;
  return { campaignId: campaign._id, client: campaign.client, voiceAgentId: campaign.voiceAgents[0]!._id };
}
