#include "tensorboard_messages.h"

#include "tensorboard.pb.h"  // generated from src/io/tensorboard.proto

namespace gan::tb {
namespace {

std::string serialized(const Event& event) {
  std::string out;
  event.SerializeToString(&out);
  return out;
}

Event at(double wall_time, std::int64_t step) {
  Event event;
  event.set_wall_time(wall_time);
  event.set_step(step);
  return event;
}

}  // namespace

std::string file_version_event(double wall_time) {
  Event event;
  event.set_wall_time(wall_time);
  event.set_file_version("brain.Event:2");
  return serialized(event);
}

std::string scalars_event(double wall_time, std::int64_t step,
                          const std::vector<std::pair<std::string, double>>& values) {
  Event event = at(wall_time, step);
  for (const auto& [tag, v] : values) {
    Summary::Value* value = event.mutable_summary()->add_value();
    value->set_tag(tag);
    value->set_simple_value(static_cast<float>(v));
  }
  return serialized(event);
}

std::string image_event(double wall_time, std::int64_t step, const std::string& tag, int height, int width,
                        int colorspace, const std::string& png) {
  Event event = at(wall_time, step);
  Summary::Value* value = event.mutable_summary()->add_value();
  value->set_tag(tag);
  Summary::Image* image = value->mutable_image();
  image->set_height(height);
  image->set_width(width);
  image->set_colorspace(colorspace);
  image->set_encoded_image_string(png);
  return serialized(event);
}

std::string text_event(double wall_time, std::int64_t step, const std::string& tag, const std::string& text) {
  Event event = at(wall_time, step);
  Summary::Value* value = event.mutable_summary()->add_value();
  value->set_tag(tag);
  TensorProto* tensor = value->mutable_tensor();
  tensor->set_dtype(7);  // DT_STRING
  tensor->mutable_tensor_shape();  // present and empty: a scalar
  tensor->add_string_val(text);
  value->mutable_metadata()->mutable_plugin_data()->set_plugin_name("text");
  return serialized(event);
}

std::string session_start_event(double wall_time, std::int64_t step) {
  Event event = at(wall_time, step);
  event.mutable_session_log()->set_status(SessionLog::START);
  return serialized(event);
}

}  // namespace gan::tb
