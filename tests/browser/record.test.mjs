// The professional's web view in a real headless Chromium, as a person uses
// it: sign in with a pasted token, find the patient three ways, read the
// record. Run by scripts/browser.sh, which starts the engine, sends
// fixtures/browser/*.hl7 and mints the tokens:
//
//   RECORDHUB_URL     http://127.0.0.1:PORT of the engine's HTTP listener
//   TOKEN_CLINICIAN   a token for role clinician (sees every category)
//   TOKEN_SOCIAL      a token for role social_care (no results)
//   ARTIFACTS         where the screenshot goes (record-page.png)
//   CHROMIUM          the browser (default /usr/bin/chromium)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BASE = process.env.RECORDHUB_URL;
const NHS = '9434765919';
const ARTIFACTS = process.env.ARTIFACTS || 'target/artifacts';
let browser;

before(async () => {
  assert.ok(BASE, 'RECORDHUB_URL is set');
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    // A closed network: nothing but the engine on loopback is ever contacted.
    // (playwright adds --headless and gives each launch a fresh profile
    // directory of its own, in place of --user-data-dir.)
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
});

after(async () => {
  await browser?.close();
});

async function signedIn(token, viewport = { width: 1366, height: 900 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  await page.goto(`${BASE}/signin`);
  await page.fill('#token', token);
  await page.click('button:has-text("Sign in")');
  await page.waitForURL(`${BASE}/`);
  return { context, page };
}

async function search(page, formHeading, fields) {
  await page.goto(`${BASE}/`);
  const form = page.locator('form.panel', { has: page.locator('h2', { hasText: formHeading }) });
  for (const [name, value] of Object.entries(fields)) await form.locator(`[name="${name}"]`).fill(value);
  await form.locator('button').click();
  await page.waitForLoadState('load');
}

test('nothing about any patient is shown without a token', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  for (const path of [`/record/${NHS}`, '/']) {
    await page.goto(`${BASE}${path}`);
    assert.equal(new URL(page.url()).pathname, '/signin', `${path} goes to sign in`);
    const text = await page.textContent('body');
    for (const secret of ["O'BRIEN", 'SIOBHAN', 'Penicillin', 'Potassium', NHS]) {
      assert.ok(!text.includes(secret), `${secret} shown without a token`);
    }
  }
  await context.close();
});

test('a clinician finds the patient three ways and reads the whole record', async () => {
  const { context, page } = await signedIn(process.env.TOKEN_CLINICIAN);
  const cookies = await context.cookies();
  const token = cookies.find((c) => c.name === 'recordhub_token');
  assert.ok(token && token.httpOnly && token.secure && token.sameSite === 'Strict', 'HttpOnly, Secure, SameSite=Strict');

  await search(page, 'By NHS number', { nhs: '943 476 5919' });
  assert.equal(new URL(page.url()).pathname, `/record/${NHS}`);
  await search(page, 'By hospital number', { local_id: 'RAL-778899' });
  assert.equal(new URL(page.url()).pathname, `/record/${NHS}`, 'another trust\'s hospital number');
  await search(page, 'By name and date of birth', { family: "o'brien", dob: '14/03/1982' });
  assert.equal(new URL(page.url()).pathname, `/record/${NHS}`, 'family name + UK date of birth');
  assert.ok(!page.url().toLowerCase().includes('brien'), 'no name in the URL');
  const title = await page.title();
  assert.equal(title, 'Patient record · recordhub', 'no patient data in the title');

  const headings = await page.locator('section.section h2').allTextContents();
  for (const h of ['Demographics', 'Allergies and reactions', 'GP', 'Contacts and care team', 'Encounters',
    'Diagnoses', 'Procedures', 'Results', 'Documents']) {
    assert.ok(headings.includes(h), `section ${h} in ${headings}`);
  }
  const banner = await page.textContent('section.banner');
  assert.match(banner, /MS SIOBHAN MARY O'BRIEN/);
  assert.match(banner, /943 476 5919/);
  assert.match(banner, /14 Mar 1982/, 'UK date of birth');
  const ids = await page.textContent('table.idlist');
  assert.match(ids, /RJ1\s*RJ1-123456/);
  assert.match(ids, /RAL\s*RAL-778899/, 'every local identifier with its trust');
  assert.match(await page.textContent('#gp'), /BOROUGH SURGERY \(F84004\)/);
  assert.match(await page.textContent('#allergies'), /Penicillin[\s\S]*Rash; Anaphylaxis/);

  // Abnormal results: a red badge with the letters and the words.
  const flag = page.locator('#results .obs .flag', { hasText: 'HH' });
  assert.equal(await flag.count(), 1);
  assert.match(await flag.textContent(), /HH\s+Critically high/);
  assert.equal(await flag.evaluate((el) => getComputedStyle(el).backgroundColor), 'rgb(197, 32, 30)');
  assert.match(await page.locator('#results .obs tr', { hasText: 'Sodium' }).textContent(), /139/);
  assert.equal(await page.locator('#results .obs tr', { hasText: 'Sodium' }).locator('.flag').count(), 0, 'normal: no badge');

  // The document body, from the journal, as text (markup in it is not markup).
  const body = await page.textContent('#documents pre.body');
  assert.match(body, /Discharge summary for Siobhán O'Brien/);
  assert.match(body, /pneumonia & sepsis, resolved\./);
  assert.match(body, /Repeat <U&E> in 1 week/);

  // Provenance on every entry; newest first; the transfer history.
  assert.match(await page.textContent('#results .source'), /Sent by RJ1LAB \(WINPATH, ORU\^R01\) on 22 Nov 2026 15:10/);
  const encounters = await page.locator('#encounters article .source').allTextContents();
  assert.equal(encounters.length, 2);
  assert.match(encounters[0], /^Sent by RJ1 /, 'the newer (RJ1 inpatient) encounter first');
  assert.match(encounters[1], /^Sent by RAL /);
  const moves = await page.textContent('#encounters table.moves');
  assert.match(moves, /22 Nov 2026 14:05\s*WARD7 \/ BAY2 \/ BED12\s*RESP \/ BAY1 \/ BED3/);

  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, 'record-page.png'), fullPage: true });

  // Break glass: a reason is asked for and the view says it was recorded.
  await page.fill('#reason', 'Unconscious in ED, no relationship recorded');
  await page.click('button:has-text("Break glass")');
  await page.waitForLoadState('load');
  assert.match(await page.textContent('p.glass'), /Break-glass view\. Reason given: Unconscious in ED/);

  // Signing out forgets the token.
  await page.click('button:has-text("Sign out")');
  await page.waitForURL(`${BASE}/signin`);
  await page.goto(`${BASE}/record/${NHS}`);
  assert.equal(new URL(page.url()).pathname, '/signin');
  await context.close();
});

test('a tablet shows the record in one readable column', async () => {
  const { context, page } = await signedIn(process.env.TOKEN_CLINICIAN, { width: 800, height: 1280 });
  await page.goto(`${BASE}/record/${NHS}`);
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 800, `no sideways scrolling of the page (${width}px)`);
  await page.screenshot({ path: join(ARTIFACTS, 'record-page-tablet.png'), fullPage: false });
  await context.close();
});

test('a social care role sees the record without results', async () => {
  const { context, page } = await signedIn(process.env.TOKEN_SOCIAL);
  await page.goto(`${BASE}/record/${NHS}`);
  assert.equal(await page.title(), 'Patient record · recordhub');
  assert.match(await page.textContent('section.banner'), /O'BRIEN/, 'demographics are shown');
  const results = await page.textContent('#results');
  assert.match(results, /Not shown to your role/);
  assert.ok(!results.includes('Potassium'), 'no result values');
  assert.equal(await page.locator('.flag').count(), 0, 'no abnormal flags anywhere');
  await context.close();
});
