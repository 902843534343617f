// ocimirror console: copy buttons, confirm prompts and live regions fed by Server-Sent Events.
// Loaded as a file (CSP script-src 'self'); every page works without it.
(function () {
  'use strict';

  function copy(button) {
    var text = button.getAttribute('data-copy') || '';
    var done = function () {
      var label = button.textContent;
      button.textContent = 'Copied';
      setTimeout(function () { button.textContent = label; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallbackCopy(text); done(); });
    } else {
      fallbackCopy(text);
      done();
    }
  }

  // Plain HTTP has no clipboard API: copy through a hidden text area.
  function fallbackCopy(text) {
    var area = document.createElement('textarea');
    area.value = text;
    area.setAttribute('readonly', '');
    area.style.position = 'absolute';
    area.style.left = '-9999px';
    document.body.appendChild(area);
    area.select();
    try { document.execCommand('copy'); } catch (e) { /* the text stays selectable on the page */ }
    document.body.removeChild(area);
  }

  document.addEventListener('click', function (event) {
    var button = event.target.closest && event.target.closest('button[data-copy]');
    if (button) {
      event.preventDefault();
      copy(button);
    }
  });

  document.addEventListener('submit', function (event) {
    var form = event.target;
    var message = form.getAttribute && form.getAttribute('data-confirm');
    if (message && !window.confirm(message)) event.preventDefault();
  });

  // <div data-sse="/console/jobs/1/events"> receives `update` events (an HTML fragment rendered by
  // the server) and stops listening at `end`, so a finished job does not reconnect forever.
  function listen(el) {
    if (!window.EventSource || el.__sse) return;
    var source = new EventSource(el.getAttribute('data-sse'));
    el.__sse = source;
    source.addEventListener('update', function (event) {
      el.innerHTML = event.data;
      if (window.htmx) window.htmx.process(el);
    });
    source.addEventListener('end', function () {
      source.close();
    });
  }

  function start(root) {
    var live = (root || document).querySelectorAll('[data-sse]');
    for (var i = 0; i < live.length; i++) listen(live[i]);
  }

  document.addEventListener('DOMContentLoaded', function () { start(document); });
  // The jobs filter swaps the list in place (htmx): the new list has its own stream.
  document.addEventListener('htmx:afterSettle', function (event) {
    var old = document.querySelectorAll('[data-sse]');
    for (var i = 0; i < old.length; i++) if (!document.body.contains(old[i]) && old[i].__sse) old[i].__sse.close();
    start(event.target);
  });
  document.addEventListener('htmx:beforeSwap', function (event) {
    var old = event.target.querySelectorAll ? event.target.querySelectorAll('[data-sse]') : [];
    for (var i = 0; i < old.length; i++) if (old[i].__sse) old[i].__sse.close();
  });
})();
