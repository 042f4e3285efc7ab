/**
 * The status page at `GET /` (src/http/status-page.ts, src/http/operator-session.ts): over HTTP
 * (login form, the session cookie and its attributes, the page header on cookie POSTs, forged
 * and expired cookies) and in Debian's Chromium driven by playwright-core against the real
 * supervisor (log in, find a failed call, retry it and see it delivered; dismiss one with a
 * reason). The retry test writes a screenshot to `.tmp/status-page.png`.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import pino from 'pino';
import { chromium, type Browser, type Page } from 'playwright-core';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildHttpServer } from '../../src/http/server.ts';
import { SESSION_COOKIE_NAME, SESSION_TTL_MS, createSessionValue } from '../../src/http/operator-session.ts';
import type { CallApi } from '../../src/supervisor/call-api.ts';
import { INGEST_TOKEN, startCallsyncHarness, type CallsyncHarness } from '../helpers/callsync-harness.ts';

const ADMIN_TOKEN = 'admin-token-for-the-status-page-test';
const CHROMIUM_PATH = '/usr/bin/chromium';
const SCREENSHOT_PATH = path.resolve('.tmp/status-page.png');
const PHONE_SCREENSHOT_PATH = path.resolve('.tmp/status-page-phone.png');
/** The page refreshes every 5 s on its own; a delivery after a retry takes well under that. */
const PAGE_WAIT_MS = 20_000;
const BROWSER_TEST_TIMEOUT_MS = 60_000;

let h: CallsyncHarness;
let browser: Browser;

beforeAll(async () => {
  h = await startCallsyncHarness({ env: { CALLSYNC_ADMIN_TOKEN: ADMIN_TOKEN } });
  browser = await chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: ['--no-sandbox', '--headless=new'],
  });
}, BROWSER_TEST_TIMEOUT_MS);

afterAll(async () => {
  await browser?.close();
  await h?.close();
});

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

async function http(
  method: 'GET' | 'POST',
  pathname: string,
  options: { headers?: Record<string, string>; body?: string } = {},
): Promise<Answer> {
  const answer = await request(`${h.url}${pathname}`, {
    method,
    headers: options.headers ?? {},
    body: options.body,
  });
  return { status: answer.statusCode, headers: answer.headers, text: await answer.body.text() };
}

const loginForm = (token: string) => ({
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams({ token }).toString(),
});

function setCookieOf(answer: Answer): string {
  const header = answer.headers['set-cookie'];
  return (Array.isArray(header) ? header[0] : header) ?? '';
}

/** `name=value` of a `Set-Cookie` header, as a browser sends it back. */
const cookiePair = (setCookie: string) => setCookie.split(';')[0] ?? '';

/** A call that ended and failed on a CRM refusal of its call data (no recording: egress aborted). */
async function failedCall(room: string): Promise<string> {
  h.startLiveKitCall(room);
  h.emulator.setRoomBehaviour(room, { egressOutcome: 'aborted' });
  h.crm.injectFaults('call-data', [{ status: 422, body: { error: `campaign of ${room} closed` } }]);
  try {
    const callId = await h.createCall(room);
    await h.egressOf(room);
    const finished = new Promise<void>((resolve) =>
      h.app.supervisor.events.on('call:finished', (event) => event.callId === callId && resolve()),
    );
    expect((await h.api('POST', `/v1/calls/${callId}/end`, {})).status).toBe(202);
    await finished;
    const call = await h.api('GET', `/v1/calls/${callId}`, undefined, {
      authorization: `Bearer ${ADMIN_TOKEN}`,
    });
    expect(call.body).toMatchObject({ state: 'failed', lastError: { code: 'CRM_REJECTED' } });
    return callId;
  } finally {
    h.crm.clearFaults();
  }
}

/** A new browser context signed in through the login form; every request it made is recorded. */
async function signedInPage(
  viewport = { width: 1280, height: 900 },
): Promise<{ page: Page; requested: string[] }> {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const requested: string[] = [];
  page.on('request', (sent) => requested.push(sent.url()));
  await page.goto(h.url);
  await page.locator('#token').fill(ADMIN_TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#failed-title').waitFor();
  return { page, requested };
}

describe('the status page over HTTP', () => {
  it('shows the login form, and no data, without a session', async () => {
    const answer = await http('GET', '/');
    expect(answer.status).toBe(200);
    expect(answer.headers['content-type']).toMatch(/^text\/html/);
    expect(answer.text).toContain('name="token"');
    expect(answer.text).not.toContain('Failed calls');
    expect(answer.text).not.toContain('status-page.js');
    expect(answer.headers['content-security-policy']).toContain("frame-ancestors 'none'");
    expect((await http('GET', '/v1/calls?state=failed')).status).toBe(401);
  });

  it('refuses a wrong token, and the ingest token when an admin token is set', async () => {
    for (const token of ['not-the-token', INGEST_TOKEN, '']) {
      const answer = await http('POST', '/login', loginForm(token));
      expect(answer.status).toBe(401);
      expect(answer.headers['set-cookie']).toBeUndefined();
      expect(answer.text).toContain('not the operator token');
    }
  });

  it('signs in with the admin token: an HttpOnly, SameSite=Strict cookie, Secure over https', async () => {
    const answer = await http('POST', '/login', loginForm(ADMIN_TOKEN));
    expect(answer.status).toBe(303);
    expect(answer.headers.location).toBe('/');
    const setCookie = setCookieOf(answer);
    expect(setCookie).toMatch(new RegExp(`^${SESSION_COOKIE_NAME}=v1\\.\\d+\\.[A-Za-z0-9_-]+;`));
    const attributes = setCookie.split(';').map((part) => part.trim());
    expect(attributes).toEqual(
      expect.arrayContaining(['HttpOnly', 'SameSite=Strict', 'Path=/', `Max-Age=${SESSION_TTL_MS / 1000}`]),
    );
    expect(attributes).not.toContain('Secure');
    expect(setCookie).not.toContain(ADMIN_TOKEN);

    const overHttps = await http('POST', '/login', {
      ...loginForm(ADMIN_TOKEN),
      headers: { ...loginForm(ADMIN_TOKEN).headers, 'x-forwarded-proto': 'https' },
    });
    expect(
      setCookieOf(overHttps)
        .split(';')
        .map((part) => part.trim()),
    ).toContain('Secure');

    const cookie = { cookie: cookiePair(setCookie) };
    const page = await http('GET', '/', { headers: cookie });
    expect(page.text).toContain('Failed calls');
    expect(page.text).toContain('/assets/status-page.js');
    expect((await http('GET', '/v1/calls?state=failed', { headers: cookie })).status).toBe(200);
    expect((await http('GET', '/v1/status', { headers: cookie })).status).toBe(200);
    // The bearer token still works as it did.
    expect(
      (await http('GET', '/v1/calls', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).status,
    ).toBe(200);

    const logout = await http('POST', '/logout', { headers: cookie });
    expect(logout.status).toBe(303);
    expect(setCookieOf(logout)).toMatch(new RegExp(`^${SESSION_COOKIE_NAME}=;.*Max-Age=0`));
  });

  it('refuses a cookie POST without the page header (403), takes it with the header', async () => {
    const login = await http('POST', '/login', loginForm(ADMIN_TOKEN));
    const cookie = cookiePair(setCookieOf(login));
    const json = { 'content-type': 'application/json', cookie };
    const withoutHeader = await http('POST', '/v1/calls/no-such-call/retry', { headers: json, body: '{}' });
    expect(withoutHeader.status).toBe(403);
    expect(JSON.parse(withoutHeader.text)).toMatchObject({ error: 'PAGE_HEADER_REQUIRED' });
    const dismissWithoutHeader = await http('POST', '/v1/calls/no-such-call/dismiss', {
      headers: json,
      body: JSON.stringify({ reason: 'cross-site' }),
    });
    expect(dismissWithoutHeader.status).toBe(403);
    const withHeader = await http('POST', '/v1/calls/no-such-call/retry', {
      headers: { ...json, 'x-callsync-page': '1' },
      body: '{}',
    });
    expect(withHeader.status).toBe(404);
  });

  it('refuses forged, tampered and expired cookies', async () => {
    const expiryMs = Date.now() + 60_000;
    const [, , validMac] = createSessionValue(ADMIN_TOKEN).split('.');
    const forged = [
      createSessionValue('some-other-token'),
      createSessionValue(INGEST_TOKEN),
      createSessionValue(ADMIN_TOKEN, Date.now() - SESSION_TTL_MS - 1_000),
      `v1.${expiryMs}.${validMac ?? ''}`,
      `v1.${expiryMs}.`,
      'v1',
      ADMIN_TOKEN,
    ];
    for (const value of forged) {
      const cookie = { cookie: `${SESSION_COOKIE_NAME}=${value}` };
      expect((await http('GET', '/v1/calls?state=failed', { headers: cookie })).status).toBe(401);
      expect((await http('GET', '/', { headers: cookie })).text).toContain('name="token"');
      expect(
        (
          await http('POST', '/v1/calls/no-such-call/retry', {
            headers: { ...cookie, 'x-callsync-page': '1', 'content-type': 'application/json' },
            body: '{}',
          })
        ).status,
      ).toBe(401);
    }
  });

  it('serves its assets from callsync itself, naming no other origin', async () => {
    const login = await http('POST', '/login', loginForm(ADMIN_TOKEN));
    const cookie = { cookie: cookiePair(setCookieOf(login)) };
    for (const [pathname, type] of [
      ['/', /^text\/html/],
      ['/assets/status-page.css', /^text\/css/],
      ['/assets/status-page.js', /^text\/javascript/],
    ] as const) {
      const answer = await http('GET', pathname, { headers: cookie });
      expect(answer.status).toBe(200);
      expect(answer.headers['content-type']).toMatch(type);
      expect(answer.text).not.toMatch(/https?:\/\//);
    }
  });
});

describe('the status page without a configured token', () => {
  it('is open, as the API is', async () => {
    const notUsed = () => Promise.reject(new Error('not used by this test'));
    const api = { isReady: () => true, isAccepting: () => true, listCalls: notUsed } as unknown as CallApi;
    const app = buildHttpServer({ api, logger: pino({ level: 'silent' }) });
    try {
      const answer = await app.inject({ method: 'GET', url: '/' });
      expect(answer.statusCode).toBe(200);
      expect(answer.body).toContain('Failed calls');
      expect(answer.body).not.toContain('Sign out');
    } finally {
      await app.close();
    }
  });
});

describe('the status page in Chromium', () => {
  it(
    'logs in, finds a failed call and its reason, retries it and sees it delivered',
    async () => {
      const callId = await failedCall('room-page-retry');
      const { page, requested } = await signedInPage();
      try {
        const row = page.locator(`#failed li[data-call-id="${callId}"]`);
        await row.waitFor({ timeout: PAGE_WAIT_MS });
        expect(await row.locator('.error').textContent()).toContain('CRM_REJECTED');

        // Its timeline, from the journal.
        await row.locator('button[data-call-id]').click();
        await page.locator('#call-id', { hasText: callId }).waitFor();
        await page.locator('#call-summary dd[data-field="state"]', { hasText: 'failed' }).waitFor();
        expect(await page.locator('#journal tbody tr').count()).toBeGreaterThan(3);
        await page.locator('#journal tbody td', { hasText: 'attempt_failed' }).first().waitFor();
        await mkdir(path.dirname(SCREENSHOT_PATH), { recursive: true });
        await page.screenshot({ path: SCREENSHOT_PATH, fullPage: true });
        console.log(`status page screenshot: ${SCREENSHOT_PATH}`);

        await row.getByRole('button', { name: 'Retry', exact: true }).click();
        await h.crm.waitForCallData(callId);
        await page
          .locator('#call-summary dd[data-field="state"]', { hasText: /^done$/ })
          .waitFor({ timeout: PAGE_WAIT_MS });
        await row.waitFor({ state: 'detached', timeout: PAGE_WAIT_MS });
        await page.locator('#failed-empty').waitFor({ state: 'visible', timeout: PAGE_WAIT_MS });
        expect(await page.locator('#notice').textContent()).toContain('accepted');

        // After a reload too.
        await page.reload();
        await page
          .locator(`#recent li[data-call-id="${callId}"] [data-field="state"]`, { hasText: 'done' })
          .waitFor();
        expect(await page.locator(`#failed li[data-call-id="${callId}"]`).count()).toBe(0);
        expect(requested.filter((url) => !url.startsWith(`${h.url}/`))).toEqual([]);
      } finally {
        await page.context().close();
      }
    },
    BROWSER_TEST_TIMEOUT_MS,
  );

  it(
    'dismisses a failed call with the reason the operator gives (on a phone-sized screen)',
    async () => {
      const callId = await failedCall('room-page-dismiss');
      const { page } = await signedInPage({ width: 390, height: 844 });
      try {
        const row = page.locator(`#failed li[data-call-id="${callId}"]`);
        await row.waitFor({ timeout: PAGE_WAIT_MS });
        await row.getByRole('button', { name: 'Dismiss…' }).click();
        // A reason is required: an empty form is not sent.
        await row.getByRole('button', { name: 'Dismiss call' }).click();
        expect(await row.count()).toBe(1);
        await row
          .getByRole('textbox', { name: 'Reason for dismissing' })
          .fill('duplicate of a call already in the CRM');
        await page.screenshot({ path: PHONE_SCREENSHOT_PATH, fullPage: true });
        console.log(`status page screenshot (phone): ${PHONE_SCREENSHOT_PATH}`);
        await row.getByRole('button', { name: 'Dismiss call' }).click();
        await row.waitFor({ state: 'detached', timeout: PAGE_WAIT_MS });

        const call = await h.api('GET', `/v1/calls/${callId}`, undefined, {
          authorization: `Bearer ${ADMIN_TOKEN}`,
        });
        expect(call.body.state).toBe('dismissed');
        expect(JSON.stringify(call.body.journal)).toContain('duplicate of a call already in the CRM');
      } finally {
        await page.context().close();
      }
    },
    BROWSER_TEST_TIMEOUT_MS,
  );
});
