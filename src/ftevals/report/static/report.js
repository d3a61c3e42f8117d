/* ftevals report: filtering and sorting only. Everything is already on the page (rendered on the
   server side); this script hides rows, reorders them, and reveals the filter bars it drives.
   It reads data-* attributes and never inserts markup, so page text is never interpreted as HTML. */
(function () {
  "use strict";

  function list(nodes) { return Array.prototype.slice.call(nodes); }

  // Space-separated model indices, e.g. data-r="1 3": models with a regression on this example.
  function flagged(row, attr, model) {
    var v = row.getAttribute(attr);
    if (!v) { return false; }
    return model === "" || v.split(" ").indexOf(model) >= 0;
  }

  var SHOW = { r: "data-r", f: "data-f", x: "data-x", b: "data-b" };

  function apply(bar) {
    var box = document.getElementById(bar.getAttribute("data-for"));
    if (!box) { return; }
    var show = bar.getAttribute("data-show") || "all";
    var model = value(bar, "model");
    var cls = value(bar, "cls");
    var rows = list(box.children);
    var shown = 0;
    rows.forEach(function (row) {
      var ok = show === "all" || flagged(row, SHOW[show], model);
      if (ok && cls !== "") { ok = row.getAttribute("data-c") === cls; }
      row.hidden = !ok;
      if (ok) { shown += 1; }
    });
    var out = bar.querySelector("output");
    if (out) { out.textContent = "showing " + shown + " of " + rows.length; }
  }

  function value(bar, key) {
    var el = bar.querySelector('select[data-k="' + key + '"]');
    return el ? el.value : "";
  }

  // Example anchors end in -e<position>, which is the original (id) order.
  function position(row) { return parseInt(row.id.slice(row.id.lastIndexOf("-e") + 2), 10); }

  function sort(bar) {
    var box = document.getElementById(bar.getAttribute("data-for"));
    var model = value(bar, "sort");
    var worstIsLow = bar.getAttribute("data-hib") !== "0";
    var rows = list(box.children);
    rows.sort(function (a, b) {
      if (model !== "") {
        var da = a.getAttribute("data-d" + model), db = b.getAttribute("data-d" + model);
        if (da !== db) {
          if (da === null) { return 1; }
          if (db === null) { return -1; }
          var d = parseFloat(da) - parseFloat(db);
          if (d !== 0) { return worstIsLow ? d : -d; }
        }
      }
      return position(a) - position(b);
    });
    rows.forEach(function (row) { box.appendChild(row); });
  }

  list(document.querySelectorAll(".flt")).forEach(function (bar) {
    bar.hidden = false;
    list(bar.querySelectorAll("button[data-show]")).forEach(function (btn) {
      btn.addEventListener("click", function () {
        list(bar.querySelectorAll("button[data-show]")).forEach(function (b) {
          b.setAttribute("aria-pressed", b === btn ? "true" : "false");
        });
        bar.setAttribute("data-show", btn.getAttribute("data-show"));
        apply(bar);
      });
    });
    list(bar.querySelectorAll("select")).forEach(function (sel) {
      sel.addEventListener("change", function () {
        if (sel.getAttribute("data-k") === "sort") { sort(bar); } else { apply(bar); }
      });
    });
    apply(bar);
  });

  // Sortable tables: click a header; numeric cells carry their value in data-v.
  function cellKey(row, col) {
    var cell = row.cells[col];
    if (!cell) { return ""; }
    var v = cell.getAttribute("data-v");
    return v === null ? cell.textContent.trim().toLowerCase() : parseFloat(v);
  }

  list(document.querySelectorAll("table.srt")).forEach(function (table) {
    var heads = list(table.tHead ? table.tHead.rows[0].cells : []);
    heads.forEach(function (th, col) {
      th.tabIndex = 0;
      function go() {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = list(body.rows);
        rows.sort(function (a, b) {
          var x = cellKey(a, col), y = cellKey(b, col);
          var xn = typeof x === "number" && !isNaN(x), yn = typeof y === "number" && !isNaN(y);
          var c = xn && yn ? x - y : xn ? -1 : yn ? 1 : String(x).localeCompare(String(y));
          return asc ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      }
      th.addEventListener("click", go);
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") { go(); } });
    });
  });

  // Following a link to an example (from an error list, a flag, a dropped-example table) must show
  // it: open the <details> around it and, if a filter hides it, reset that filter to "All".
  function reveal() {
    var id = decodeURIComponent(location.hash.slice(1));
    var el = id ? document.getElementById(id) : null;
    if (!el) { return; }
    for (var p = el.parentElement; p; p = p.parentElement) {
      if (p.tagName === "DETAILS") { p.open = true; }
    }
    if (el.hidden && el.parentElement && el.parentElement.id) {
      var bar = document.querySelector('.flt[data-for="' + el.parentElement.id + '"]');
      var all = bar ? bar.querySelector('button[data-show="all"]') : null;
      if (bar) { list(bar.querySelectorAll("select")).forEach(function (s) { if (s.getAttribute("data-k") !== "sort") { s.value = ""; } }); }
      if (all) { all.click(); }
    }
    el.scrollIntoView();
  }
  window.addEventListener("hashchange", reveal);
  if (location.hash) { reveal(); }
})();
