/**
 * The HTML shell of the page: it loads the bundle (`app.js`, `app.css`)
 * built by scripts/build.mjs from dashboard/page/.
 * @module
 */

/** The page's HTML. */
export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Cohesix dashboard</title>
<link rel="stylesheet" href="/app.css">
</head>
<body>
<div id="app">Loading…</div>
<script type="module" src="/app.js"></script>
</body>
</html>
`;

/** Shown instead of the page without a session. */
export const SIGN_IN_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Cohesix dashboard: sign in</title></head>
<body><h1>401: not signed in</h1>
<p>Open the one-time login URL that <code>cohesix dashboard</code> printed (<code>/login?token=…</code>). Restart it for a new one.</p>
</body></html>
`;
