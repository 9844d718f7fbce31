#include "gan/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>
#include <vector>

#include "gan/errors.h"
#include "gan/files.h"
#include "gan/json.h"

namespace gan {
namespace fs = std::filesystem;

namespace {

std::string html(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string base64(const std::string& in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const unsigned v = static_cast<unsigned char>(in[i]) << 16 | static_cast<unsigned char>(in[i + 1]) << 8 |
                       static_cast<unsigned char>(in[i + 2]);
    out += t[v >> 18], out += t[(v >> 12) & 63], out += t[(v >> 6) & 63], out += t[v & 63];
  }
  if (i + 1 == in.size()) {
    const unsigned v = static_cast<unsigned char>(in[i]) << 16;
    out += t[v >> 18], out += t[(v >> 12) & 63], out += "==";
  } else if (i + 2 == in.size()) {
    const unsigned v = static_cast<unsigned char>(in[i]) << 16 | static_cast<unsigned char>(in[i + 1]) << 8;
    out += t[v >> 18], out += t[(v >> 12) & 63], out += t[(v >> 6) & 63], out += '=';
  }
  return out;
}

std::string fmt(double v) {
  char buf[32];
  if (v != 0 && (std::fabs(v) >= 1e5 || std::fabs(v) < 1e-3)) std::snprintf(buf, sizeof buf, "%.2e", v);
  else std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

// About five round values (1, 2 or 5 times a power of ten apart) between lo and hi.
std::vector<double> nice_ticks(double lo, double hi) {
  const double raw = (hi - lo) / 4;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double step = raw / mag < 1.5 ? mag : raw / mag < 3.5 ? 2 * mag : raw / mag < 7.5 ? 5 * mag : 10 * mag;
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step) * step; t <= hi + step * 1e-9; t += step)
    ticks.push_back(std::fabs(t) < step * 1e-9 ? 0 : t);
  return ticks;
}

struct Series {
  std::string name, colour;
  std::vector<std::pair<double, double>> points;  // (step, value)
  bool dashed = false;                            // a floor: drawn dashed
};

// A line chart as inline SVG: axes with five ticks each, one polyline per series, a legend.
std::string chart(const std::string& title, const std::vector<Series>& all, bool log_y = false) {
  std::vector<Series> series;
  for (const auto& s : all)
    if (!s.points.empty()) series.push_back(s);
  const double w = 580, h = 260, left = 64, right = 16, top = 28, bottom = 36;
  std::ostringstream os;
  os << "<figure><svg viewBox=\"0 0 " << w << " " << h << "\" width=\"" << w << "\" height=\"" << h
     << "\" role=\"img\" aria-label=\"" << html(title) << "\">";
  os << "<text x=\"" << left << "\" y=\"18\" class=\"title\">" << html(title) << "</text>";
  if (series.empty()) {
    os << "<text x=\"" << left << "\" y=\"" << h / 2 << "\" class=\"none\">no data in this run</text></svg></figure>";
    return os.str();
  }
  auto yv = [&](double v) { return log_y ? std::log10(std::max(v, 1e-12)) : v; };
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (const auto& s : series)
    for (const auto& [x, y] : s.points) {
      if (!std::isfinite(y)) continue;
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, yv(y)), y1 = std::max(y1, yv(y));
    }
  if (x0 > x1) x0 = 0, x1 = 1;
  if (y0 > y1) y0 = 0, y1 = 1;
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y0 -= 0.5, y1 += 0.5;
  const double pad = (y1 - y0) * 0.05;
  y0 -= pad, y1 += pad;
  auto px = [&](double x) { return left + (x - x0) / (x1 - x0) * (w - left - right); };
  auto py = [&](double y) { return h - bottom - (yv(y) - y0) / (y1 - y0) * (h - top - bottom); };
  os << "<rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << w - left - right << "\" height=\""
     << h - top - bottom << "\" class=\"plot\"/>";
  for (double yy : nice_ticks(y0, y1)) {
    const double yscreen = h - bottom - (yy - y0) / (y1 - y0) * (h - top - bottom);
    os << "<line x1=\"" << left << "\" x2=\"" << w - right << "\" y1=\"" << yscreen << "\" y2=\"" << yscreen
       << "\" class=\"grid\"/><text x=\"" << left - 6 << "\" y=\"" << yscreen + 4 << "\" class=\"ytick\">"
       << fmt(log_y ? std::pow(10.0, yy) : yy) << "</text>";
  }
  for (double xv : nice_ticks(x0, x1))
    os << "<text x=\"" << px(xv) << "\" y=\"" << h - bottom + 16 << "\" class=\"xtick\">" << fmt(xv) << "</text>";
  os << "<text x=\"" << w - right << "\" y=\"" << h - 4 << "\" class=\"xlabel\">step</text>";
  double legend_x = left + 8;
  for (const auto& s : series) {
    os << "<polyline fill=\"none\" stroke=\"" << s.colour << "\" stroke-width=\"1.6\""
       << (s.dashed ? " stroke-dasharray=\"5 4\"" : "") << " points=\"";
    for (const auto& [x, y] : s.points)
      if (std::isfinite(y)) os << px(x) << "," << py(y) << " ";
    os << "\"/>";
    if (s.points.size() == 1)
      os << "<circle cx=\"" << px(s.points[0].first) << "\" cy=\"" << py(s.points[0].second) << "\" r=\"3\" fill=\""
         << s.colour << "\"/>";
    os << "<rect x=\"" << legend_x << "\" y=\"" << top + 6 << "\" width=\"12\" height=\"3\" fill=\"" << s.colour
       << "\"/><text x=\"" << legend_x + 16 << "\" y=\"" << top + 11 << "\" class=\"legend\">" << html(s.name)
       << "</text>";
    legend_x += 24 + 7.0 * static_cast<double>(s.name.size());
  }
  os << "</svg></figure>";
  return os.str();
}

std::string read_or(const std::string& path, const std::string& fallback) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return fallback;
  try {
    return read_file(path);
  } catch (const UserError&) {
    return fallback;
  }
}

}  // namespace

std::string write_report(const std::string& run_dir, const std::string& out_path) {
  std::error_code ec;
  if (!fs::is_regular_file(run_dir + "/config.yaml", ec))
    throw UserError(kExitUsage, run_dir + " is not a gan-train run folder (it has no config.yaml)");
  const std::string out = out_path.empty() ? run_dir + "/report.html" : out_path;

  // Metrics rows: training rows at output.metrics_every, evaluation rows at eval.every.
  std::map<std::string, Series> train;
  std::map<std::string, Series> scores;
  auto add = [](std::map<std::string, Series>& m, const std::string& key, double step, double v) {
    m[key].points.emplace_back(step, v);
  };
  std::istringstream metrics(read_or(run_dir + "/metrics.jsonl", ""));
  int rows = 0;
  for (std::string line; std::getline(metrics, line);) {
    Json row;
    try {
      row = parse_json(line);
    } catch (const std::exception&) {
      continue;  // a row cut short by a killed process
    }
    const double step = row.num("step", -1);
    if (step < 0) continue;
    if (const Json* e = row.get("eval")) {
      for (const char* k : {"fd", "fd_floor", "kid", "kid_floor", "precision", "precision_floor", "recall",
                            "recall_floor"})
        if (const Json* v = e->get(k); v && v->kind == Json::kNumber) add(scores, k, step, v->number);
      continue;
    }
    ++rows;
    for (const char* k : {"loss_d", "loss_g", "d_real", "d_fake", "d_fake_g", "penalty", "img_per_s"})
      if (const Json* v = row.get(k); v && v->kind == Json::kNumber) add(train, k, step, v->number);
  }
  auto S = [](std::map<std::string, Series>& m, const std::string& key, const std::string& name, const char* colour,
              bool dashed = false) {
    Series s = m[key];
    s.name = name, s.colour = colour, s.dashed = dashed;
    return s;
  };

  // Grids: samples/step_XXXXXXX.png, at most 60 of them, evenly spaced, the last always.
  std::vector<std::pair<long long, std::string>> grids;
  for (const auto& e : fs::directory_iterator(run_dir + "/samples", ec)) {
    long long step;
    if (std::sscanf(e.path().filename().string().c_str(), "step_%lld.png", &step) == 1 &&
        e.path().extension() == ".png")
      grids.emplace_back(step, e.path().string());
  }
  std::sort(grids.begin(), grids.end());
  if (grids.size() > 60) {
    std::vector<std::pair<long long, std::string>> some;
    for (size_t i = 0; i < 60; ++i) some.push_back(grids[i * (grids.size() - 1) / 59]);
    grids = some;
  }

  // Health warnings: train.log's warning lines.
  std::vector<std::string> warnings;
  std::istringstream log(read_or(run_dir + "/train.log", ""));
  for (std::string line; std::getline(log, line);)
    if (line.find("] [warning] ") != std::string::npos || line.find(" warning ") != std::string::npos)
      warnings.push_back(line);

  const std::string name = fs::path(run_dir).lexically_normal().filename().string();
  std::ostringstream p;
  p << "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\">"
    << "<title>" << html(name) << " - gan-train report</title><style>"
    << "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fff;max-width:1320px}"
    << "h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}"
    << "figure{display:inline-block;margin:8px 12px 8px 0}svg text{font:11px sans-serif;fill:#444}"
    << "svg .title{font-size:13px;font-weight:bold;fill:#222}svg .ytick{text-anchor:end}svg .xtick{text-anchor:middle}"
    << "svg .xlabel{text-anchor:end}svg .plot{fill:#fafafa;stroke:#ccc}svg .grid{stroke:#e6e6e6}"
    << "pre{background:#f6f6f6;padding:10px;overflow:auto;max-height:420px}"
    << "#grid img{image-rendering:pixelated;width:560px;max-width:100%;border:1px solid #ddd}"
    << ".warn{color:#a33}</style></head><body>\n";
  p << "<h1>" << html(name) << "</h1><p>" << rows << " metrics rows, " << scores["fd"].points.size()
    << " evaluations, " << grids.size() << " sample grids. Written by gan-train / gan-report from "
    << html(fs::absolute(run_dir).lexically_normal().string()) << ".</p>\n";
  p << "<h2>Training</h2>\n";
  const auto& pen = train["penalty"].points;
  const bool penalty = std::any_of(pen.begin(), pen.end(), [](const auto& pt) { return pt.second != 0; });
  p << chart("Losses", {S(train, "loss_d", "D loss", "#1f77b4"), S(train, "loss_g", "G loss", "#d62728"),
                        penalty ? S(train, "penalty", "penalty", "#7f7f7f") : Series{}});
  p << chart("D outputs", {S(train, "d_real", "D(x)", "#2ca02c"), S(train, "d_fake", "D(G(z)) in D step", "#ff7f0e"),
                           S(train, "d_fake_g", "D(G(z)) in G step", "#9467bd")});
  p << chart("Speed (img/s)", {S(train, "img_per_s", "img/s", "#17becf")});
  p << "\n<h2>Evaluation</h2>\n";
  if (scores["fd"].points.empty())
    p << "<p>No evaluation in this run (eval.every is 0; gan-eval scores a checkpoint any time).</p>\n";
  else p << chart("Frechet distance (dashed: real-vs-real floor)",
             {S(scores, "fd", "FD", "#1f77b4"), S(scores, "fd_floor", "floor", "#1f77b4", true)});
  if (!scores["fd"].points.empty()) p << chart("KID (dashed: floor)", {S(scores, "kid", "KID", "#d62728"), S(scores, "kid_floor", "floor", "#d62728", true)});
  if (!scores["fd"].points.empty()) p << chart("Precision and recall (dashed: floors)",
             {S(scores, "precision", "precision", "#2ca02c"), S(scores, "recall", "recall", "#ff7f0e"),
              S(scores, "precision_floor", "precision floor", "#2ca02c", true),
              S(scores, "recall_floor", "recall floor", "#ff7f0e", true)});
  p << "\n<h2>Samples from the fixed noise</h2>\n";
  if (grids.empty()) {
    p << "<p>No sample grid yet.</p>\n";
  } else {
    p << "<p><label>step <span id=\"gridstep\">" << grids.back().first << "</span> <input id=\"gridslider\" "
      << "type=\"range\" min=\"0\" max=\"" << grids.size() - 1 << "\" value=\"" << grids.size() - 1
      << "\" style=\"width:420px\"></label></p><div id=\"grid\">";
    for (size_t i = 0; i < grids.size(); ++i)
      p << "<img alt=\"grid at step " << grids[i].first << "\" data-step=\"" << grids[i].first << "\""
        << (i + 1 == grids.size() ? "" : " hidden") << " src=\"data:image/png;base64,"
        << base64(read_or(grids[i].second, "")) << "\">";
    p << "</div>\n<script>\n"
      << "(function () {\n"
      << "  var slider = document.getElementById('gridslider');\n"
      << "  var label = document.getElementById('gridstep');\n"
      << "  var images = document.querySelectorAll('#grid img');\n"
      << "  slider.addEventListener('input', function () {\n"
      << "    for (var i = 0; i < images.length; ++i) images[i].hidden = i !== Number(slider.value);\n"
      << "    label.textContent = images[Number(slider.value)].getAttribute('data-step');\n"
      << "  });\n"
      << "})();\n</script>\n";
  }
  p << "\n<h2>Health warnings</h2>\n";
  if (warnings.empty()) p << "<p>None.</p>\n";
  else {
    p << "<ul class=\"warn\">";
    for (const auto& w : warnings) p << "<li>" << html(w) << "</li>";
    p << "</ul>\n";
  }
  p << "\n<h2>Summary</h2>\n<pre>" << html(read_or(run_dir + "/summary.json", "(the run has not ended yet)"))
    << "</pre>\n";
  p << "\n<h2>Config</h2>\n<pre>" << html(read_or(run_dir + "/config.yaml", "")) << "</pre>\n</body></html>\n";
  write_file_atomic(out, p.str());
  return out;
}

}  // namespace gan
