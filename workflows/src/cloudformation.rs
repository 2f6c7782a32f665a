//! The CloudFormation template that records the delivery-order graph as deployed configuration:
//! the graph's YAML as an AWS AppConfig hosted configuration version, and its version number as an
//! SSM parameter that deployments read (`DELIVERY_GRAPH_VERSION`). Generated from the same YAML the
//! workflow compiles in, so the recorded graph cannot drift from the enforced one; `graphgen`
//! writes it and a test fails when the committed file is stale.

use std::fmt::Write;

use crate::graph::StateGraph;

/// File name of the generated template inside `deploy/cloudformation/`.
pub const GRAPH_TEMPLATE_FILE: &str = "delivery-order-graph.yaml";

/// The template for `graph` whose source text is `yaml` (the file as shipped, comments included).
pub fn graph_template(graph: &StateGraph, yaml: &str) -> String {
    let name = &graph.graph;
    let version = graph.version;
    let mut out = String::new();
    let _ = write!(
        out,
        "\
# Generated from resources/{name}.v{version}.yaml by `make diagrams` (graphgen). Do not edit by hand.
AWSTemplateFormatVersion: \"2010-09-09\"
Description: >-
  The {name} state graph version {version} as deployed configuration: the graph as an AppConfig
  hosted configuration version and its version number as an SSM parameter.
Parameters:
  Environment:
    Type: String
    AllowedValues: [dev, prod]
    Description: The environment whose workers read this graph version.
Resources:
  GraphApplication:
    Type: AWS::AppConfig::Application
    Properties:
      Name: !Sub \"{name}-graph-${{Environment}}\"
      Description: State graphs of the delivery-order service.
  GraphProfile:
    Type: AWS::AppConfig::ConfigurationProfile
    Properties:
      ApplicationId: !Ref GraphApplication
      Name: {name}
      LocationUri: hosted
      Type: AWS::Freeform
      Description: The {name} graph; one hosted version per graph version.
  GraphVersion{version}:
    Type: AWS::AppConfig::HostedConfigurationVersion
    Properties:
      ApplicationId: !Ref GraphApplication
      ConfigurationProfileId: !Ref GraphProfile
      ContentType: application/x-yaml
      VersionLabel: \"v{version}\"
      Description: {name} graph version {version}
      Content: |
"
    );
    for line in yaml.lines() {
        if line.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, "        {line}");
        }
    }
    // No `\` line continuation here: it would strip the indentation of the first line.
    let _ = write!(
        out,
        "  GraphVersionParameter:
    Type: AWS::SSM::Parameter
    Properties:
      Name: !Sub \"/delivery/${{Environment}}/graph/{name}/version\"
      Type: String
      Value: \"{version}\"
      Description: The {name} graph version the workers of this environment are deployed with (DELIVERY_GRAPH_VERSION).
Outputs:
  GraphVersion:
    Description: The {name} graph version recorded by this stack.
    Value: \"{version}\"
    Export:
      Name: !Sub \"${{AWS::StackName}}-GraphVersion\"
  GraphVersionParameterName:
    Description: The SSM parameter that holds the graph version.
    Value: !Ref GraphVersionParameter
"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{DELIVERY_ORDER_V1, DELIVERY_ORDER_V1_YAML};

    #[test]
    fn the_template_is_yaml_that_holds_the_graph_verbatim_and_its_version() {
        let text = graph_template(&DELIVERY_ORDER_V1, DELIVERY_ORDER_V1_YAML);
        // CloudFormation's short tags (!Ref, !Sub) are YAML tags: serde_yaml keeps them as tagged values.
        let template: serde_yaml::Value = serde_yaml::from_str(&text).expect("the template parses");
        let resources = &template["Resources"];
        let content = resources["GraphVersion1"]["Properties"]["Content"]
            .as_str()
            .expect("the hosted content is a string");
        assert_eq!(
            content, DELIVERY_ORDER_V1_YAML,
            "the graph is recorded byte for byte"
        );
        assert_eq!(
            resources["GraphVersionParameter"]["Properties"]["Value"].as_str(),
            Some("1")
        );
        assert_eq!(
            template["Outputs"]["GraphVersion"]["Value"].as_str(),
            Some("1")
        );
        let keys: Vec<_> = template
            .as_mapping()
            .unwrap()
            .keys()
            .filter_map(|k| k.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "AWSTemplateFormatVersion",
                "Description",
                "Parameters",
                "Resources",
                "Outputs"
            ],
            "only template sections at the top level"
        );
    }
}
