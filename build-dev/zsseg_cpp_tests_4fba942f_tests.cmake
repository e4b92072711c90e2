add_test([=[Device.CountIsNonNegativeAndStable]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=Device.CountIsNonNegativeAndStable]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[Device.CountIsNonNegativeAndStable]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_device.cpp:8]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[Device.CompiledFlagMatchesBuild]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=Device.CompiledFlagMatchesBuild]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[Device.CompiledFlagMatchesBuild]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_device.cpp:16]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[Device.ErrorStringsAreNeverNull]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=Device.ErrorStringsAreNeverNull]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[Device.ErrorStringsAreNeverNull]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_device.cpp:25]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[SegmentCpu.MatchesNaiveForAllBiasKindsAndSigmoidModes]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=SegmentCpu.MatchesNaiveForAllBiasKindsAndSigmoidModes]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[SegmentCpu.MatchesNaiveForAllBiasKindsAndSigmoidModes]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_segment.cpp:161]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[SegmentCpu.EqualsArgmaxOfUpsampleBitForBit]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=SegmentCpu.EqualsArgmaxOfUpsampleBitForBit]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[SegmentCpu.EqualsArgmaxOfUpsampleBitForBit]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_segment.cpp:181]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[SegmentCpu.EqualLogitsPickLowestIndex]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=SegmentCpu.EqualLogitsPickLowestIndex]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[SegmentCpu.EqualLogitsPickLowestIndex]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_segment.cpp:223]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[SegmentCpu.FirstNanClassWinsWithNanScore]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=SegmentCpu.FirstNanClassWinsWithNanScore]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[SegmentCpu.FirstNanClassWinsWithNanScore]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_segment.cpp:233]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[SegmentCpu.ManyDistinctBiasesUseExactRefinement]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=SegmentCpu.ManyDistinctBiasesUseExactRefinement]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[SegmentCpu.ManyDistinctBiasesUseExactRefinement]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_segment.cpp:251]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[FastSigmoid.AbsoluteErrorBelow1e7]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=FastSigmoid.AbsoluteErrorBelow1e7]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[FastSigmoid.AbsoluteErrorBelow1e7]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_segment.cpp:266]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[SegmentWindowsCpu.EqualsTheUnfusedComposition]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=SegmentWindowsCpu.EqualsTheUnfusedComposition]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[SegmentWindowsCpu.EqualsTheUnfusedComposition]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_segment_windows.cpp:110]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[SegmentWindowsCpu.ReportsUncoveredPixels]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=SegmentWindowsCpu.ReportsUncoveredPixels]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[SegmentWindowsCpu.ReportsUncoveredPixels]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_segment_windows.cpp:123]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[SimilarityCpuEdge.ZeroVectorsGiveZeroNotNan]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=SimilarityCpuEdge.ZeroVectorsGiveZeroNotNan]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[SimilarityCpuEdge.ZeroVectorsGiveZeroNotNan]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_similarity.cpp:89]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[BilinearTap.MatchesTorchIndexRule]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=BilinearTap.MatchesTorchIndexRule]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[BilinearTap.MatchesTorchIndexRule]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_upsample.cpp:143]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[UpsampleCpu.MatchesNaiveReference]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=UpsampleCpu.MatchesNaiveReference]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[UpsampleCpu.MatchesNaiveReference]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_upsample.cpp:159]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[UpsampleCpu.CalibratedMatchesNaiveLoop]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=UpsampleCpu.CalibratedMatchesNaiveLoop]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[UpsampleCpu.CalibratedMatchesNaiveLoop]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_upsample.cpp:170]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[UpsampleCpu.BiasOnlyIsThePlainResizeMinusTheBiasExactly]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=UpsampleCpu.BiasOnlyIsThePlainResizeMinusTheBiasExactly]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[UpsampleCpu.BiasOnlyIsThePlainResizeMinusTheBiasExactly]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_upsample.cpp:191]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[UpsampleCpu.SigmoidSaturatesAndPropagatesNan]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=UpsampleCpu.SigmoidSaturatesAndPropagatesNan]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[UpsampleCpu.SigmoidSaturatesAndPropagatesNan]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_upsample.cpp:203]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[UpsampleCpu.NanNeighbourWithZeroWeightPropagates]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=UpsampleCpu.NanNeighbourWithZeroWeightPropagates]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[UpsampleCpu.NanNeighbourWithZeroWeightPropagates]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_upsample.cpp:225]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[Sizes/RelationCpu.MatchesConcatThenLinear/B1_C1_D1_Dout1_bias]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=Sizes/RelationCpu.MatchesConcatThenLinear/B1_C1_D1_Dout1_bias]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[Sizes/RelationCpu.MatchesConcatThenLinear/B1_C1_D1_Dout1_bias]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_relation_descriptor.cpp:72]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[Sizes/RelationCpu.MatchesConcatThenLinear/B1_C1_D1_Dout0_nobias]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=Sizes/RelationCpu.MatchesConcatThenLinear/B1_C1_D1_Dout0_nobias]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[Sizes/RelationCpu.MatchesConcatThenLinear/B1_C1_D1_Dout0_nobias]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_relation_descriptor.cpp:72]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[Sizes/RelationCpu.MatchesConcatThenLinear/B2_C5_D7_Dout0_nobias]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=Sizes/RelationCpu.MatchesConcatThenLinear/B2_C5_D7_Dout0_nobias]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[Sizes/RelationCpu.MatchesConcatThenLinear/B2_C5_D7_Dout0_nobias]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_relation_descriptor.cpp:72]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[Sizes/RelationCpu.MatchesConcatThenLinear/B3_C13_D33_Dout17_bias]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=Sizes/RelationCpu.MatchesConcatThenLinear/B3_C13_D33_Dout17_bias]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[Sizes/RelationCpu.MatchesConcatThenLinear/B3_C13_D33_Dout17_bias]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_relation_descriptor.cpp:72]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[Sizes/RelationCpu.MatchesConcatThenLinear/B2_C40_D96_Dout64_nobias]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=Sizes/RelationCpu.MatchesConcatThenLinear/B2_C40_D96_Dout64_nobias]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[Sizes/RelationCpu.MatchesConcatThenLinear/B2_C40_D96_Dout64_nobias]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_relation_descriptor.cpp:72]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[Sizes/RelationCpu.MatchesConcatThenLinear/B1_C171_D64_Dout100_bias]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=Sizes/RelationCpu.MatchesConcatThenLinear/B1_C171_D64_Dout100_bias]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[Sizes/RelationCpu.MatchesConcatThenLinear/B1_C171_D64_Dout100_bias]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_relation_descriptor.cpp:72]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[Sizes/RelationCpu.MatchesConcatThenLinear/B4_C7_D5_Dout1_bias]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=Sizes/RelationCpu.MatchesConcatThenLinear/B4_C7_D5_Dout1_bias]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[Sizes/RelationCpu.MatchesConcatThenLinear/B4_C7_D5_Dout1_bias]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_relation_descriptor.cpp:72]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[Sizes/SimilarityCpu.MatchesNaiveLoop/B1_N1_C1_D1_sharedtext_raw]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=Sizes/SimilarityCpu.MatchesNaiveLoop/B1_N1_C1_D1_sharedtext_raw]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[Sizes/SimilarityCpu.MatchesNaiveLoop/B1_N1_C1_D1_sharedtext_raw]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_similarity.cpp:65]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[Sizes/SimilarityCpu.MatchesNaiveLoop/B1_N1_C1_D1_sharedtext_norm]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=Sizes/SimilarityCpu.MatchesNaiveLoop/B1_N1_C1_D1_sharedtext_norm]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[Sizes/SimilarityCpu.MatchesNaiveLoop/B1_N1_C1_D1_sharedtext_norm]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_similarity.cpp:65]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[Sizes/SimilarityCpu.MatchesNaiveLoop/B2_N17_C7_D5_sharedtext_norm]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=Sizes/SimilarityCpu.MatchesNaiveLoop/B2_N17_C7_D5_sharedtext_norm]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[Sizes/SimilarityCpu.MatchesNaiveLoop/B2_N17_C7_D5_sharedtext_norm]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_similarity.cpp:65]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[Sizes/SimilarityCpu.MatchesNaiveLoop/B3_N33_C13_D64_batchedtext_raw]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=Sizes/SimilarityCpu.MatchesNaiveLoop/B3_N33_C13_D64_batchedtext_raw]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[Sizes/SimilarityCpu.MatchesNaiveLoop/B3_N33_C13_D64_batchedtext_raw]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_similarity.cpp:65]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[Sizes/SimilarityCpu.MatchesNaiveLoop/B2_N70_C40_D96_batchedtext_norm]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=Sizes/SimilarityCpu.MatchesNaiveLoop/B2_N70_C40_D96_batchedtext_norm]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[Sizes/SimilarityCpu.MatchesNaiveLoop/B2_N70_C40_D96_batchedtext_norm]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_similarity.cpp:65]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[Sizes/SimilarityCpu.MatchesNaiveLoop/B1_N16_C6_D512_sharedtext_norm]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=Sizes/SimilarityCpu.MatchesNaiveLoop/B1_N16_C6_D512_sharedtext_norm]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[Sizes/SimilarityCpu.MatchesNaiveLoop/B1_N16_C6_D512_sharedtext_norm]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_similarity.cpp:65]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
add_test([=[Sizes/SimilarityCpu.MatchesNaiveLoop/B1_N129_C200_D3_sharedtext_raw]=]  /work/wt/merge/build-dev/zsseg_cpp_tests [==[--gtest_filter=Sizes/SimilarityCpu.MatchesNaiveLoop/B1_N129_C200_D3_sharedtext_raw]==] --gtest_also_run_disabled_tests)
set_tests_properties([=[Sizes/SimilarityCpu.MatchesNaiveLoop/B1_N129_C200_D3_sharedtext_raw]=]
  PROPERTIES
    
    DEF_SOURCE_LINE [==[/work/wt/merge/cpp_tests/test_similarity.cpp:65]==]
    WORKING_DIRECTORY [==[/work/wt/merge/build-dev]==]
    SKIP_REGULAR_EXPRESSION [==[\[  SKIPPED \]]==]
    
)
set(zsseg_cpp_tests_TESTS [==[Device.CountIsNonNegativeAndStable]==] [==[Device.CompiledFlagMatchesBuild]==] [==[Device.ErrorStringsAreNeverNull]==] [==[SegmentCpu.MatchesNaiveForAllBiasKindsAndSigmoidModes]==] [==[SegmentCpu.EqualsArgmaxOfUpsampleBitForBit]==] [==[SegmentCpu.EqualLogitsPickLowestIndex]==] [==[SegmentCpu.FirstNanClassWinsWithNanScore]==] [==[SegmentCpu.ManyDistinctBiasesUseExactRefinement]==] [==[FastSigmoid.AbsoluteErrorBelow1e7]==] [==[SegmentWindowsCpu.EqualsTheUnfusedComposition]==] [==[SegmentWindowsCpu.ReportsUncoveredPixels]==] [==[SimilarityCpuEdge.ZeroVectorsGiveZeroNotNan]==] [==[BilinearTap.MatchesTorchIndexRule]==] [==[UpsampleCpu.MatchesNaiveReference]==] [==[UpsampleCpu.CalibratedMatchesNaiveLoop]==] [==[UpsampleCpu.BiasOnlyIsThePlainResizeMinusTheBiasExactly]==] [==[UpsampleCpu.SigmoidSaturatesAndPropagatesNan]==] [==[UpsampleCpu.NanNeighbourWithZeroWeightPropagates]==] [==[Sizes/RelationCpu.MatchesConcatThenLinear/B1_C1_D1_Dout1_bias]==] [==[Sizes/RelationCpu.MatchesConcatThenLinear/B1_C1_D1_Dout0_nobias]==] [==[Sizes/RelationCpu.MatchesConcatThenLinear/B2_C5_D7_Dout0_nobias]==] [==[Sizes/RelationCpu.MatchesConcatThenLinear/B3_C13_D33_Dout17_bias]==] [==[Sizes/RelationCpu.MatchesConcatThenLinear/B2_C40_D96_Dout64_nobias]==] [==[Sizes/RelationCpu.MatchesConcatThenLinear/B1_C171_D64_Dout100_bias]==] [==[Sizes/RelationCpu.MatchesConcatThenLinear/B4_C7_D5_Dout1_bias]==] [==[Sizes/SimilarityCpu.MatchesNaiveLoop/B1_N1_C1_D1_sharedtext_raw]==] [==[Sizes/SimilarityCpu.MatchesNaiveLoop/B1_N1_C1_D1_sharedtext_norm]==] [==[Sizes/SimilarityCpu.MatchesNaiveLoop/B2_N17_C7_D5_sharedtext_norm]==] [==[Sizes/SimilarityCpu.MatchesNaiveLoop/B3_N33_C13_D64_batchedtext_raw]==] [==[Sizes/SimilarityCpu.MatchesNaiveLoop/B2_N70_C40_D96_batchedtext_norm]==] [==[Sizes/SimilarityCpu.MatchesNaiveLoop/B1_N16_C6_D512_sharedtext_norm]==] [==[Sizes/SimilarityCpu.MatchesNaiveLoop/B1_N129_C200_D3_sharedtext_raw]==])
