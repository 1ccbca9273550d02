"""The installer's page's style and its little script (plain JS, no build step).

The script does two things: "aim (live)" refreshes a camera's picture every AIM_MS while it
is on (and shows how old the frame is), and the rest of the page is fetched again every
REFRESH_MS. It stops asking while the page is hidden, so a phone left in a pocket costs nothing.
"""

CSS = """
:root{--ok:#1a7f37;--bad:#c62828;--warn:#b26a00;--mute:#8a8f98;--bg:#f6f7f9;--card:#fff}
*{box-sizing:border-box}body{margin:0;font:15px/1.4 system-ui,sans-serif;background:var(--bg);color:#1d2330}
main{max-width:1200px;margin:0 auto;padding:8px}header{display:flex;flex-wrap:wrap;gap:8px;align-items:center}
h1{font-size:20px;margin:4px 0}h2{font-size:16px;margin:4px 0 8px}h3{font-size:14px;margin:8px 0 4px}
.sub{color:var(--mute)}.badge{padding:1px 8px;border-radius:9px;color:#fff;font-size:13px;background:var(--mute)}
.badge.ok{background:var(--ok);color:#fff}.badge.bad{background:var(--bad);color:#fff}
section,article{background:var(--card);border-radius:8px;padding:10px;margin:8px 0;box-shadow:0 1px 2px #0002}
#attention.bad{border-left:5px solid var(--bad)}#attention.ok{border-left:5px solid var(--ok)}
.cams{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:8px;background:none;box-shadow:none;padding:0}
.cams article{margin:0}figure{margin:0}img.snap{width:100%;height:auto;background:#222;border-radius:4px;display:block}
figcaption{display:flex;gap:8px;align-items:center;margin:4px 0}button.aim{font:inherit;padding:4px 10px}
button.aim.on{background:var(--ok);color:#fff;border-color:var(--ok)}.frame-time{color:var(--mute);font-size:13px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 10px;margin:6px 0}dt{color:var(--mute)}dd{margin:0}
.timeline{position:relative;margin:6px 0 18px}.track,.marks{position:relative;height:16px;background:#e4e6ea;border-radius:3px;overflow:hidden}
.marks{height:10px;background:none;margin-top:2px}.track span,.marks i{position:absolute;top:0;bottom:0}
.rec{background:var(--ok)}.gap{background:var(--bad)}.before{background:#d9dce1}.timeline.hour{margin-top:-10px}.link.online{background:var(--ok)}.link.offline{background:var(--bad)}
.link.unknown{background:#c5c8ce}.marks i{background:#3b6fd8;border-radius:2px}.marks i.state-failed{background:var(--bad)}
.marks i.state-delivered{background:#6a3fb5}.ticks{position:relative;height:12px;font-size:11px;color:var(--mute)}
.ticks span{position:absolute;transform:translateX(-50%)}ul{margin:4px 0;padding-left:18px}a{color:#1f5fbf}
ul.bookings{list-style:none;padding:0;font-size:14px}ul.bookings li{padding:3px 0;border-top:1px solid #eee}
.state-delivered .state{color:#6a3fb5}.state-failed .state,.bad{color:var(--bad)}.id{color:var(--mute)}
.video{display:inline-block;margin-left:6px}.video a{margin-left:4px}
table.queue{border-collapse:collapse}table.queue td,table.queue th{padding:2px 8px;text-align:right}
table.queue th:first-child{text-align:left}ul.leds{list-style:none;padding:0}
.led i{display:inline-block;width:12px;height:12px;border-radius:50%;margin-right:6px;background:#ccc;vertical-align:-1px}
.led.green.on i,.led.green.blink i{background:#2ecc40}.led.amber.on i,.led.amber.blink i{background:#ffaa00}
.led.red.on i,.led.red.blink i{background:#ff3b30}.led.blink i{animation:blink 1s steps(1) infinite}
@keyframes blink{0%{opacity:1}50%{opacity:.15}}footer{color:var(--mute);font-size:12px;text-align:center}
@media (max-width:520px){main{padding:4px}.cams{grid-template-columns:1fr}}
"""

JS = """
(function () {
  var AIM_MS = 2000, REFRESH_MS = 20000, aiming = {}, timers = {};
  function ago(iso) {
    var s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    return s < 90 ? s + ' s ago' : Math.round(s / 60) + ' min ago';
  }
  function shoot(name) {
    var card = document.querySelector('article.cam[data-camera="' + name + '"]');
    if (!card) return;
    var img = card.querySelector('img.snap'), when = card.querySelector('.frame-time');
    fetch(img.getAttribute('data-src') + '?t=' + Date.now(), {cache: 'no-store'}).then(function (r) {
      if (!r.ok) return r.json().then(function (e) { when.textContent = e.message; });
      var t = r.headers.get('X-Venuecam-Frame-Time');
      return r.blob().then(function (b) {
        var old = img.src;
        img.src = URL.createObjectURL(b);
        if (old.indexOf('blob:') === 0) URL.revokeObjectURL(old);
        if (t) { img.setAttribute('data-frame-time', t); when.textContent = 'picture from ' + ago(t); }
      });
    }).catch(function () { when.textContent = 'no answer from the box'; })
      .then(function () { if (aiming[name] && !document.hidden) timers[name] = setTimeout(function () { shoot(name); }, AIM_MS); });
  }
  function aim(button) {
    var name = button.getAttribute('data-camera');
    aiming[name] = !aiming[name];
    clearTimeout(timers[name]);
    button.classList.toggle('on', aiming[name]);
    button.textContent = aiming[name] ? 'aiming: live' : 'aim (live)';
    if (aiming[name]) shoot(name);
  }
  function wire(root) {
    root.querySelectorAll('button.aim:not([data-wired])').forEach(function (b) {
      var name = b.getAttribute('data-camera');
      b.setAttribute('data-wired', '1');
      b.addEventListener('click', function () { aim(b); });
      if (aiming[name]) { b.classList.add('on'); b.textContent = 'aiming: live'; }
    });
  }
  function refresh() {
    if (document.hidden) return;
    fetch(location.pathname + location.search, {cache: 'no-store'}).then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var next = new DOMParser().parseFromString(html, 'text/html').getElementById('live');
        var live = document.getElementById('live');
        if (!next || !live) return;
        live.querySelectorAll('article.cam').forEach(function (card) {  // keep the pictures shown
          var twin = next.querySelector('article.cam[data-camera="' + card.getAttribute('data-camera') + '"]');
          if (twin) twin.querySelector('figure').replaceWith(card.querySelector('figure'));
        });
        live.replaceWith(next);
        wire(next);
      }).catch(function () {});
  }
  wire(document);
  var params = new URLSearchParams(location.search);
  (params.get('aim') || '').split(',').forEach(function (name) {
    var b = name && document.querySelector('button.aim[data-camera="' + name + '"]');
    if (b) aim(b);
  });
  document.addEventListener('visibilitychange', function () {
    if (!document.hidden) Object.keys(aiming).forEach(function (n) { if (aiming[n]) { clearTimeout(timers[n]); shoot(n); } });
  });
  setInterval(refresh, REFRESH_MS);
})();
"""
