// The OpenID Connect provider the end-to-end tests sign in through: panva's
// certified oidc-provider, configured here and nothing more. The browser goes
// through its own log-in and consent pages (its development interactions:
// any login name is an account id, any password is accepted).
//
// Configured by the harness through OIDC_TEST_CONFIG (JSON):
//   { "clients": [{ "client_id", "client_secret", "redirect_uris": [...] }] }
// Prints one line {"event":"listening","url":...} once it serves.
//
// Two test-only controls, on the provider's own origin:
//   PUT /__test/accounts/{id}  {"name","email","email_verified"}  claims of an account
//   PUT /__test/tamper         {"mode"}  how to alter the next ID tokens, to
//     check the relying party refuses them: none | wrong_aud | wrong_iss |
//     expired | bad_signature | nonce | rotate_key (sign with a new key that
//     the JWKS then also publishes: a legitimate key rotation).
import http from 'node:http';
import Provider from 'oidc-provider';
import * as jose from 'jose';

const config = JSON.parse(process.env.OIDC_TEST_CONFIG || '{"clients":[]}');
const accounts = new Map();
let tamper = 'none';

const { privateKey, publicKey } = await jose.generateKeyPair('RS256', { extractable: true });
const signingJwk = { ...(await jose.exportJWK(privateKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
// Made when first needed (RSA key generation is slow): one to forge
// signatures under the real kid, and the provider's second key, published
// only once rotation starts.
let forger;
let rotated;
let rotatedPublic;
let rotatedPublished = false;

function claimsOf(id) {
  return {
    sub: id,
    name: `User ${id}`,
    email: `${id}@example.test`,
    email_verified: true,
    ...(accounts.get(id) || {}),
  };
}

async function forge(idToken) {
  const payload = jose.decodeJwt(idToken);
  const now = Math.floor(Date.now() / 1000);
  let key = privateKey;
  let kid = 'k1';
  switch (tamper) {
    case 'wrong_aud': payload.aud = 'some-other-client'; break;
    case 'wrong_iss': payload.iss = 'https://issuer.invalid'; break;
    case 'expired': payload.iat = now - 7200; payload.exp = now - 3600; break;
    case 'nonce': payload.nonce = 'not-the-nonce-that-was-sent'; break;
    case 'bad_signature':
      forger ||= await jose.generateKeyPair('RS256');
      key = forger.privateKey;
      break;
    case 'rotate_key':
      if (!rotated) {
        rotated = await jose.generateKeyPair('RS256', { extractable: true });
        rotatedPublic = { ...(await jose.exportJWK(rotated.publicKey)), kid: 'k2', alg: 'RS256', use: 'sig' };
      }
      key = rotated.privateKey;
      kid = 'k2';
      rotatedPublished = true;
      break;
    default: return idToken;
  }
  // at_hash stays valid: it covers the access token, which is unchanged.
  return new jose.SignJWT(payload).setProtectedHeader({ alg: 'RS256', kid, typ: 'JWT' }).sign(key);
}

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: config.clients.map((c) => ({
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    ...c,
  })),
  jwks: { keys: [signingJwk] },
  pkce: { required: () => true },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    return { accountId: id, async claims() { return claimsOf(id); } };
  },
  // Quiet: tests read the relying party's logs, not this one's.
  renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = `<h1>oidc-provider error</h1><pre>${JSON.stringify(out)}</pre>`;
  },
});
provider.proxy = false;

provider.use(async (ctx, next) => {
  await next();
  if (ctx.path === '/token' && ctx.method === 'POST' && ctx.status === 200 && ctx.body && ctx.body.id_token) {
    ctx.body = { ...ctx.body, id_token: await forge(ctx.body.id_token) };
  }
  if (ctx.path === '/jwks' && rotatedPublished && ctx.body && Array.isArray(ctx.body.keys)) {
    ctx.body = { keys: [...ctx.body.keys, rotatedPublic] };
  }
});

const callback = provider.callback();
server.on('request', (req, res) => {
  const url = new URL(req.url, issuer);
  if (req.method === 'PUT' && url.pathname.startsWith('/__test/')) {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      const value = JSON.parse(body || '{}');
      if (url.pathname === '/__test/tamper') {
        tamper = value.mode || 'none';
      } else if (url.pathname.startsWith('/__test/accounts/')) {
        accounts.set(decodeURIComponent(url.pathname.slice('/__test/accounts/'.length)), value);
      } else {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(204).end();
    });
    return;
  }
  callback(req, res);
});

process.stdout.write(`${JSON.stringify({ event: 'listening', url: issuer })}\n`);
process.on('SIGTERM', () => server.close(() => process.exit(0)));
