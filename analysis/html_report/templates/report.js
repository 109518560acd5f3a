"use strict";
// Transcript browser. Every piece of data is put in the page with textContent, never as HTML.
(function () {
  const D = JSON.parse(document.getElementById("run-data").textContent);
  const S = D.strings;
  const byId = new Map(D.participants.map((p) => [p.id, p]));
  const state = { filters: {}, policy: D.policies[0] || "", contradicted: false, search: "" };

  function el(tag, props, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "text") node.textContent = value;
      else if (key === "className") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children || []) node.appendChild(child);
    return node;
  }
  const str = (i) => (i === null || i === undefined ? null : S[i]);
  const text = (lines) => lines.map((i) => S[i]).join("\n");
  const fragment = (pid, policy) =>
    "#" + new URLSearchParams({ p: pid, policy: policy }).toString();

  function levels(name) {
    const found = new Set();
    for (const p of D.participants) if (p.attrs[name] !== null && p.attrs[name] !== undefined) found.add(p.attrs[name]);
    return [...found].sort();
  }

  function select(name, label, options, onChange, current) {
    const box = el("select", { "data-filter": name, "aria-label": label });
    for (const [value, shown] of options) {
      const option = el("option", { value: value, text: shown });
      if (value === current) option.selected = true;
      box.appendChild(option);
    }
    box.addEventListener("change", () => onChange(box.value));
    return el("label", {}, [document.createTextNode(label), box]);
  }

  function buildFilters() {
    const root = document.getElementById("filters");
    const groups = [["condition", D.conditions], ["subgroup", D.subgroups]];
    for (const [kind, names] of groups) {
      for (const name of names) {
        const options = [["", "all"], ...levels(name).map((v) => [v, v])];
        root.appendChild(select(name, kind + ": " + name, options, (v) => {
          state.filters[name] = v; renderList();
        }, ""));
      }
    }
    root.appendChild(select("policy", "policy", D.policies.map((p) => [p, p]), (v) => {
      state.policy = v; renderList(); const open = current(); if (open) location.hash = fragment(open.id, v);
    }, state.policy));
    const box = el("input", { type: "checkbox", "data-filter": "contradicted" });
    box.addEventListener("change", () => { state.contradicted = box.checked; renderList(); });
    root.appendChild(el("label", {}, [document.createTextNode("contradicted their belief"), box]));
    const search = el("input", { type: "search", "data-filter": "search", placeholder: "participant id" });
    search.addEventListener("input", () => { state.search = search.value.trim(); renderList(); });
    root.appendChild(el("label", {}, [document.createTextNode("id"), search]));
  }

  function matches(p) {
    const run = p.runs[state.policy];
    if (!run) return false;
    for (const [name, value] of Object.entries(state.filters)) if (value && p.attrs[name] !== value) return false;
    if (state.contradicted && run.contradicted.length === 0) return false;
    return !state.search || p.id.includes(state.search);
  }

  function current() {
    const params = new URLSearchParams(location.hash.slice(1));
    const p = byId.get(params.get("p") || "");
    return p ? p : null;
  }

  function renderList() {
    const list = document.getElementById("participants");
    const open = current();
    const shown = D.participants.filter(matches);
    document.getElementById("count").textContent = shown.length + " of " + D.participants.length + " participants";
    const items = shown.map((p) => {
      const link = el("a", { href: fragment(p.id, state.policy), text: p.id, "data-participant": p.id });
      if (p.runs[state.policy].contradicted.length) link.classList.add("flag");
      if (open && open.id === p.id) link.classList.add("current");
      return el("li", {}, [link]);
    });
    list.replaceChildren(...items);
  }

  function optionText(qid, oid) {
    if (oid === null || oid === undefined) return "(no answer)";
    const q = D.questions[qid];
    const o = q ? q.options.find((x) => x.id === oid) : null;
    return o ? o.label + ") " + o.text : oid;
  }

  function summary(p, policy) {
    const run = p.runs[policy];
    const qids = Object.keys(D.questions);
    const head = el("tr", {}, [el("th", { text: "round" }), ...qids.map((q) => el("th", { text: q }))]);
    const rows = D.rounds.map((r) => el("tr", {}, [el("td", { text: String(r) + (run.contradicted.includes(r) ? " ⚠ contradicted" : "") }),
      ...qids.map((q) => {
        const sim = run.answers[String(r)][q];
        const twin = p.human ? p.human[String(r)][q] : null;
        const cell = el("td", { "data-round": String(r), "data-question": q }, [
          el("div", { text: policy + ": " + optionText(q, sim) }),
          el("div", { className: "twin", text: "twin: " + (p.human ? optionText(q, twin) : "(no human twin)") })]);
        if (p.human && sim !== twin) cell.classList.add("mismatch");
        return cell;
      })]));
    return el("table", { className: "summary" }, [el("thead", {}, [head]), el("tbody", {}, rows)]);
  }

  function probabilities(m, p) {
    const [, round, , qRef, , probs, answer] = m;
    const qid = str(qRef);
    const q = D.questions[qid];
    if (!q || !probs) return null;
    const twin = p.human && p.human[String(round)] ? p.human[String(round)][qid] : null;
    const grid = el("div", { className: "probs" });
    q.options.forEach((o, i) => {
      const share = probs[i] || 0;
      const marks = [];
      if (o.id === str(answer)) marks.push("drawn");
      if (p.human && o.id === twin) marks.push("human twin");
      grid.appendChild(el("span", { className: o.id === str(answer) ? "drawn" : "", text: o.label + ") " + o.text }));
      const bar = el("div", { className: "bar" });
      bar.style.width = Math.round(share * 200) + "px";
      grid.appendChild(el("div", {}, [bar]));
      grid.appendChild(el("span", { text: share.toFixed(3) }));
      grid.appendChild(el("span", { className: marks.includes("human twin") ? "twin" : "drawn", text: marks.join(", ") }));
    });
    return grid;
  }

  function message(m, p) {
    const [role, round, stage, qRef, lines, , answer, invalid] = m;
    const roleName = D.roles[role];
    const where = "round " + round + (stage !== null ? " · " + str(stage) : "") + (qRef !== null ? " · " + str(qRef) : "");
    const box = el("div", { className: "msg " + roleName }, [
      el("div", { className: "role", text: roleName + " · " + where }),
      el("div", { className: "text", text: text(lines) })]);
    if (roleName === "assistant" && qRef !== null) {
      const qid = str(qRef);
      const twin = p.human && p.human[String(round)] ? p.human[String(round)][qid] : null;
      box.appendChild(el("div", {}, [
        el("span", { className: "drawn", text: "drawn: " + optionText(qid, str(answer)) + "   " }),
        el("span", { className: "twin", text: "human twin: " + (p.human ? optionText(qid, twin) : "(no human twin)") })]));
      if (invalid !== null) box.appendChild(el("div", { className: "invalid", text: "invalid answer: " + str(invalid) }));
      const bars = probabilities(m, p);
      if (bars) box.appendChild(bars);
    }
    return box;
  }

  function renderDetail() {
    const detail = document.getElementById("detail");
    const p = current();
    if (!p) { detail.replaceChildren(el("p", { className: "dim", text: "Choose a participant." })); return; }
    const params = new URLSearchParams(location.hash.slice(1));
    let policy = params.get("policy") || state.policy;
    if (!p.runs[policy]) policy = Object.keys(p.runs)[0];
    const attrs = Object.entries(p.attrs).map(([k, v]) => k + "=" + v).join(", ");
    const run = p.runs[policy];
    const link = el("a", { href: fragment(p.id, policy), text: "link to this participant" });
    detail.replaceChildren(
      el("h3", { id: "participant-title", text: p.id + " · " + policy }),
      el("p", { className: "dim", text: attrs }),
      el("p", { text: run.contradicted.length ? "Action contradicted belief in round(s) " + run.contradicted.join(", ") : "No round where action contradicted belief." }),
      link, el("h4", { text: "Answers: simulated beside the human twin" }), summary(p, policy),
      el("h4", { text: "Messages in order" }),
      el("div", { id: "messages" }, run.messages.map((m) => message(m, p))));
    renderList();
  }

  buildFilters();
  renderList();
  renderDetail();
  window.addEventListener("hashchange", renderDetail);
})();
