/**
 * What the simulated callers and the bot say: a handful of short inbound sales conversations
 * (home loan, car insurance, credit card, rooftop solar, clinic appointment), with the caller's
 * name and city filled in, and the lead the bot would create from each.
 *
 * Text only; timestamps, ids and confidences are the call plan's business (call-plan.ts).
 */

export interface Persona {
  name: string;
  city: string;
}

export interface Turn {
  role: 'user' | 'assistant';
  content: string;
}

export interface Conversation {
  topic: string;
  turns: Turn[];
  /** The lead the bot creates when the call yields one (`POST /v1/calls/{id}/leads` `data`). */
  leadData: Record<string, unknown>;
}

const bot = (content: string): Turn => ({ role: 'assistant', content });
const caller = (content: string): Turn => ({ role: 'user', content });

type Script = (persona: Persona) => Conversation;

const SCRIPTS: readonly Script[] = [
  ({ name, city }) => ({
    topic: 'home loan',
    turns: [
      bot('Hello, this is Asha from Sunrise Home Finance. How can I help you today?'),
      caller(`Hi, I'm looking at a flat in ${city} and wanted to know your home loan rates.`),
      bot('Of course. Our rates start at 8.4 percent for salaried applicants. May I have your name?'),
      caller(`It's ${name}.`),
      bot(`Thank you, ${name}. What loan amount are you considering?`),
      caller('Around sixty lakhs, over twenty years.'),
      bot('Noted. A loan officer will call you back within a day with an eligibility estimate.'),
    ],
    leadData: { name, city, product: 'home_loan', amountInr: 6_000_000, tenureYears: 20 },
  }),
  ({ name, city }) => ({
    topic: 'car insurance',
    turns: [
      bot('Good afternoon, you have reached Shield Motor Insurance. Are you calling about a renewal?'),
      caller('Yes, my policy expires next week and the premium went up a lot.'),
      bot('I can check a better quote for you. Could you tell me your name and city?'),
      caller(`${name}, from ${city}.`),
      bot('Thanks. Do you want zero-depreciation cover included?'),
      caller('Yes please, and roadside assistance.'),
      bot('Done. You will get the quote on WhatsApp in a few minutes.'),
    ],
    leadData: {
      name,
      city,
      product: 'motor_insurance',
      addOns: ['zero_depreciation', 'roadside_assistance'],
    },
  }),
  ({ name, city }) => ({
    topic: 'credit card',
    turns: [
      bot('Hello, thank you for calling Meridian Bank cards. How may I help?'),
      caller('I got an SMS about upgrading to the travel card. What are the charges?'),
      bot('The annual fee is 2,999 rupees, waived if you spend three lakhs a year. May I have your name?'),
      caller(`Sure, ${name}.`),
      bot(`${name}, shall I ask our team to start the upgrade?`),
      caller('Yes, go ahead.'),
    ],
    leadData: { name, city, product: 'credit_card_upgrade', card: 'travel' },
  }),
  ({ name, city }) => ({
    topic: 'rooftop solar',
    turns: [
      bot('Namaste, this is SolarGrid. Are you interested in rooftop solar for your home?'),
      caller('Yes, our electricity bill is around four thousand a month.'),
      bot('A three kilowatt system would cover most of that. What is your name and where do you live?'),
      caller(`I'm ${name}, in ${city}.`),
      bot('We can do a free site survey this Saturday. Does the morning work?'),
      caller('Morning is fine.'),
      bot('Booked. Our engineer will call you an hour before the visit.'),
    ],
    leadData: { name, city, product: 'rooftop_solar', systemKw: 3, surveySlot: 'saturday_morning' },
  }),
  ({ name, city }) => ({
    topic: 'clinic appointment',
    turns: [
      bot('Hello, CarePoint Clinics. Would you like to book an appointment?'),
      caller('Yes, with a dermatologist, sometime this week.'),
      bot(`We have Thursday at 5 pm at our ${city} branch. Whose name should I book it under?`),
      caller(`${name}.`),
      bot(`Thursday at 5 pm for ${name} is confirmed. You will get an SMS reminder.`),
    ],
    leadData: { name, city, product: 'appointment', speciality: 'dermatology', slot: 'thursday_17_00' },
  }),
];

const FIRST_NAMES = [
  'Priya',
  'Rahul',
  'Ananya',
  'Vikram',
  'Meera',
  'Arjun',
  'Kavya',
  'Rohan',
  'Sneha',
  'Imran',
];
const LAST_NAMES = ['Sharma', 'Iyer', 'Patel', 'Reddy', 'Menon', 'Khan', 'Gupta', 'Nair', 'Joshi', 'Das'];
const CITIES = ['Mumbai', 'Pune', 'Bengaluru', 'Chennai', 'Hyderabad', 'Kochi', 'Jaipur', 'Kolkata'];

/** Picks a script and a persona from three samples in [0, 1). */
export function conversationFor(samples: { script: number; name: number; city: number }): Conversation {
  const pick = <T>(list: readonly T[], sample: number): T => list[Math.floor(sample * list.length)]!;
  const nameIndex = Math.floor(samples.name * FIRST_NAMES.length * LAST_NAMES.length);
  const persona: Persona = {
    name: `${FIRST_NAMES[nameIndex % FIRST_NAMES.length]!} ${LAST_NAMES[Math.floor(nameIndex / FIRST_NAMES.length)]!}`,
    city: pick(CITIES, samples.city),
  };
  return pick(SCRIPTS, samples.script)(persona);
}
