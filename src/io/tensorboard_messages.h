// TensorBoard's Event messages, serialized by the protobuf runtime from src/io/tensorboard.proto. Internal to
// src/io/tensorboard.cpp (which frames them as records). Kept free of LibTorch headers: a PyTorch wheel's include
// folder carries protobuf headers of its own version, so this file and the generated code are compiled without it.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace gan::tb {

// Event{wall_time, file_version "brain.Event:2"}.
std::string file_version_event(double wall_time);
// Event{wall_time, step, summary{value{tag, simple_value}...}}.
std::string scalars_event(double wall_time, std::int64_t step,
                          const std::vector<std::pair<std::string, double>>& values);
// Event{wall_time, step, summary{value{tag, image{height, width, colorspace, PNG}}}}.
std::string image_event(double wall_time, std::int64_t step, const std::string& tag, int height, int width,
                        int colorspace, const std::string& png);
// Event{wall_time, step, summary{value{tag, tensor{DT_STRING scalar}, metadata{plugin "text"}}}}.
std::string text_event(double wall_time, std::int64_t step, const std::string& tag, const std::string& text);
// Event{wall_time, step, session_log{START}}.
std::string session_start_event(double wall_time, std::int64_t step);

}  // namespace gan::tb
