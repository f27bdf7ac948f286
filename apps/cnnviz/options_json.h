// Options structs as JSON, for report.json's "options": every field under the name it has in its struct,
// nested as the structs nest, with the values the run used (callers store resolved values, such as the
// worker count, in the struct first). Each ToJson binds all fields of its struct in one structured
// binding, so a field added to a struct does not compile until it is written too: a report never drifts
// from the options, and no command copies its flags by hand.
#pragma once

#include <nlohmann/json.hpp>

#include "cnnviz/actmax_command.h"
#include "cnnviz/adversarial_command.h"
#include "cnnviz/atlas_command.h"
#include "cnnviz/compare_command.h"
#include "cnnviz/deconv_command.h"
#include "cnnviz/dissect_command.h"
#include "cnnviz/invert_command.h"

namespace cnnviz::app {

nlohmann::json ToJson(const ModelOptions& options);
nlohmann::json ToJson(const ImageParamOptions& options);
nlohmann::json ToJson(const RenderOptions& options);
nlohmann::json ToJson(const ActMaxOptions& options);
nlohmann::json ToJson(const DeconvOptions& options);
nlohmann::json ToJson(const DissectionOptions& options);
nlohmann::json ToJson(const BrodenOptions& options);
nlohmann::json ToJson(const InversionOptions& options);
nlohmann::json ToJson(const AttackOptions& options);

nlohmann::json ToJson(const ActMaxCommandOptions& options);
nlohmann::json ToJson(const AdversarialCommandOptions& options);
nlohmann::json ToJson(const AtlasCommandOptions& options);
nlohmann::json ToJson(const CompareCommandOptions& options);
nlohmann::json ToJson(const DeconvCommandOptions& options);
nlohmann::json ToJson(const DissectCommandOptions& options);
nlohmann::json ToJson(const InvertCommandOptions& options);

}  // namespace cnnviz::app
